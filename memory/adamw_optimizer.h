// AdamW / Adam over a rank's ZeroParameters: fp32 moments laid out like its fp32 master weights
// (the whole buffer at ZeRO stage 0, the rank's shard from stage 1), each maximal run of decayed
// (or undecayed) parameters inside one owned slice updated by the fused kernel in one call. With
// a low-precision compute copy, the kernel writes the rounded weights in the same pass.
#pragma once

#include <torch/torch.h>

#include "core/config/config.h"
#include "kernels/adamw.h"
#include "memory/zero_parameters.h"

namespace cr {

// The kernel's parameters for step `step` (1-based) at `lr`, weight decay still 0.
AdamStepParams adam_step_params(const OptimizerConfig& config, int64_t step, double lr, double grad_scale);

// Maximal runs of decayed (matrices, embeddings) or undecayed parameters inside each of `slices`,
// which the kernel updates with one call each.
struct DecaySegment {
  size_t slice;           // index into the slices
  int64_t offset, numel;  // within that slice
  bool decay;
};
std::vector<DecaySegment> decay_segments(const std::vector<FlatEntry>& entries, const std::vector<ShardSlice>& slices);

// One segment's update: `w` the fp32 master weights (or, without them, the 16-bit weights), `g`
// fp32 gradients, `m` / `v` the moments, `copy` the 16-bit compute copy written in the same pass
// (undefined: none). All on one device; CPU tensors go through the fused kernel.
void adamw_update(torch::Tensor w, const torch::Tensor& g, torch::Tensor m, torch::Tensor v, torch::Tensor copy,
                  const AdamStepParams& p);

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
  OptimizerConfig config_;
  ZeroParameters& params_;
  torch::Tensor exp_avg_, exp_avg_sq_;
  std::vector<DecaySegment> segments_;
  int64_t step_count_ = 0;
};

}  // namespace cr
