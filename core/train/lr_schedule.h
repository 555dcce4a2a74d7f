// Learning-rate schedules: linear warmup, then cosine or linear decay to min_lr, or constant.
#pragma once

#include <cstdint>
#include <string>

#include "core/config/config.h"

namespace cr {

// The learning rate for 0-based `step` of a run of `total_steps` steps.
double learning_rate(const LrScheduleConfig& schedule, double base_lr, int64_t step, int64_t total_steps);

// A warning when the schedule cannot do what it says in a run of `total_steps` (warm-up longer
// than the run: the peak rate is never reached); "" when it can.
std::string schedule_warning(const LrScheduleConfig& schedule, int64_t total_steps);

}  // namespace cr
