#include "memory/loss_scaler.h"

#include <algorithm>

#include "core/base/error.h"

namespace cr {

DynamicLossScaler::DynamicLossScaler(const PrecisionConfig& config) : config_(config), scale_(config.initial_scale) {
  if (config.min_scale > config.max_scale) {
    fail("precision.min_scale {} exceeds precision.max_scale {}", config.min_scale, config.max_scale);
  }
  if (config.initial_scale < config.min_scale || config.initial_scale > config.max_scale) {
    fail("precision.initial_scale {} is outside [min_scale {}, max_scale {}]", config.initial_scale,
         config.min_scale, config.max_scale);
  }
}

bool DynamicLossScaler::update(bool overflow) {
  const double before = scale_;
  if (overflow) {
    growth_step_ = 0;
    if (++hysteresis_step_ >= config_.hysteresis) scale_ = std::max(scale_ * config_.backoff_factor, config_.min_scale);
  } else if (++growth_step_ == config_.growth_interval) {
    growth_step_ = 0;
    hysteresis_step_ = 0;
    scale_ = std::min(scale_ * config_.growth_factor, config_.max_scale);
  }
  return scale_ != before;
}

void DynamicLossScaler::set_state(const State& state) {
  scale_ = state.scale;
  growth_step_ = state.growth_step;
  hysteresis_step_ = state.hysteresis_step;
}

}  // namespace cr
