// AdamW / Adam over FlatParameters: fp32 moments laid out like the flat master buffer, each
// maximal run of decayed (or undecayed) parameters updated by the fused kernel in one call.
// With a shard (ZeRO stage 1) it keeps moments for, and updates, only that range of the buffer;
// the caller gathers the updated weights from the other ranks.
#pragma once

#include <optional>
#include <utility>

#include <torch/torch.h>

#include "core/config.h"
#include "memory/flat_parameters.h"

namespace cr {

class AdamWOptimizer {
 public:
  // shard: [begin, end) of the flat buffer this optimizer owns; the whole buffer by default.
  AdamWOptimizer(const OptimizerConfig& config, FlatParameters& params,
                 std::optional<std::pair<int64_t, int64_t>> shard = std::nullopt);

  // One update of the shard's fp32 weights with learning rate `lr`; every gradient is multiplied
  // by grad_scale first. The low-precision copy is the caller's to refresh (publish_master).
  void step(double lr, double grad_scale);

  std::pair<int64_t, int64_t> shard() const { return {shard_begin_, shard_end_}; }

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t count) { step_count_ = count; }
  torch::Tensor& exp_avg() { return exp_avg_; }  // the shard's moments
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }

 private:
  OptimizerConfig config_;
  FlatParameters& params_;
  int64_t shard_begin_ = 0, shard_end_ = 0;
  torch::Tensor exp_avg_, exp_avg_sq_;
  struct Range {
    int64_t begin, end;
    bool decay;
  };
  std::vector<Range> ranges_;
  int64_t step_count_ = 0;
};

}  // namespace cr
