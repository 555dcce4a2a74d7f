#include "core/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace cr {

double learning_rate(const LrScheduleConfig& schedule, double base_lr, int64_t step, int64_t total_steps) {
  if (step < schedule.warmup_steps) {
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(schedule.warmup_steps);
  }
  if (schedule.kind == "constant") return base_lr;
  const int64_t decay_steps = schedule.decay_steps > 0 ? schedule.decay_steps : total_steps;
  const int64_t span = std::max<int64_t>(1, decay_steps - schedule.warmup_steps);
  const double progress = std::clamp(static_cast<double>(step - schedule.warmup_steps) / span, 0.0, 1.0);
  const double shape = schedule.kind == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return schedule.min_lr + (base_lr - schedule.min_lr) * shape;
}

std::string schedule_warning(const LrScheduleConfig& schedule, int64_t total_steps) {
  if (schedule.warmup_steps <= total_steps) return "";
  return fmt::format("lr_schedule.warmup_steps {} exceeds train.steps {}: the learning rate never reaches optimizer.lr",
                     schedule.warmup_steps, total_steps);
}

}  // namespace cr
