// fp16's dynamic loss scaler, with Colossal-AI's DynamicGradScaler rules: the loss is multiplied
// by the scale before backward and gradients are divided by it in the optimizer step. A step
// whose gradients overflow (inf / NaN on any rank) is skipped; after `hysteresis` overflowing
// steps the scale backs off (and keeps backing off on each further overflow until it grows
// again); after `growth_interval` clean steps in a row it grows.
#pragma once

#include <cstdint>

#include "core/config/config.h"

namespace cr {

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(const PrecisionConfig& config);

  double scale() const { return scale_; }
  // Records one step's outcome; returns true when the scale changed.
  bool update(bool overflow);

  // For checkpoints: the scale and the counters that decide its next change.
  struct State {
    double scale = 1.0;
    int64_t growth_step = 0;
    int64_t hysteresis_step = 0;
  };
  State state() const { return {scale_, growth_step_, hysteresis_step_}; }
  void set_state(const State& state);

 private:
  PrecisionConfig config_;
  double scale_;
  int64_t growth_step_ = 0;
  int64_t hysteresis_step_ = 0;
};

}  // namespace cr
