// AdamW / Adam over a rank's ZeroParameters: fp32 moments laid out like its fp32 master weights
// (the whole buffer at ZeRO stage 0, the rank's shard from stage 1), each maximal run of decayed
// (or undecayed) parameters inside one owned slice updated by the fused kernel in one call. With
// a low-precision compute copy, the kernel writes the rounded weights in the same pass.
#pragma once

#include <torch/torch.h>

#include "core/config/config.h"
#include "memory/zero_parameters.h"

namespace cr {

class AdamWOptimizer {
 public:
  AdamWOptimizer(const OptimizerConfig& config, ZeroParameters& params);

  // One update with learning rate `lr`; every gradient is multiplied by grad_scale first
  // (clipping and loss-scale division folded into one factor).
  void step(double lr, double grad_scale);

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t count) { step_count_ = count; }
  torch::Tensor& exp_avg() { return exp_avg_; }  // owned shard space
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  int64_t state_bytes() const { return 2 * exp_avg_.numel() * static_cast<int64_t>(sizeof(float)); }

 private:
  struct Segment {
    size_t bucket;           // owned slice it lies in
    int64_t offset, numel;   // within that slice
    bool decay;
  };
  OptimizerConfig config_;
  ZeroParameters& params_;
  torch::Tensor exp_avg_, exp_avg_sq_;
  std::vector<Segment> segments_;
  int64_t step_count_ = 0;
};

}  // namespace cr
