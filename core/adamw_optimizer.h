// AdamW / Adam over FlatParameters: fp32 moments laid out like the flat master buffer, each
// maximal run of decayed (or undecayed) parameters updated by the fused kernel in one call.
#pragma once

#include <torch/torch.h>

#include "core/config.h"
#include "memory/flat_parameters.h"

namespace cr {

class AdamWOptimizer {
 public:
  AdamWOptimizer(const OptimizerConfig& config, FlatParameters& params);

  // One update with learning rate `lr`; every gradient is multiplied by grad_scale first.
  void step(double lr, double grad_scale);

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t count) { step_count_ = count; }
  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }

 private:
  OptimizerConfig config_;
  FlatParameters& params_;
  torch::Tensor exp_avg_, exp_avg_sq_;
  struct Range {
    int64_t begin, end;
    bool decay;
  };
  std::vector<Range> ranges_;
  int64_t step_count_ = 0;
};

}  // namespace cr
