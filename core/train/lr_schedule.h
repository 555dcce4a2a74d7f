// Learning-rate schedules: linear warmup, then cosine or linear decay to min_lr, or constant.
#pragma once

#include <cstdint>

#include "core/config/config.h"

namespace cr {

// The learning rate for 0-based `step` of a run of `total_steps` steps.
double learning_rate(const LrScheduleConfig& schedule, double base_lr, int64_t step, int64_t total_steps);

}  // namespace cr
