// ZeRO stages 0-3 (Rajbhandari et al.) as a ParameterStrategy, over the ranks that hold the same
// parameters: ZeroParameters (buffers per stage), GradientSynchronizer (bucketed reduction from
// gradient hooks), AdamWOptimizer (fused Adam on the owned shard) and, at stage 3,
// ParameterGatherer (each block's weights gathered around its use). docs/zero.md.
#pragma once

#include <memory>

#include "core/config/config.h"
#include "memory/adamw_optimizer.h"
#include "memory/gradient_sync.h"
#include "memory/parameter_gatherer.h"
#include "memory/parameter_strategy.h"
#include "memory/weight_source.h"
#include "memory/zero_parameters.h"

namespace cr {

struct ZeroOptions {
  int stage = 0;
  torch::Device device = torch::kCPU;
  torch::ScalarType compute_dtype = torch::kFloat;
  bool master_weights = true;
  int64_t bucket_bytes = 25 << 20;
  bool overlap = true;  // reduce (and at stage 3 prefetch) while computing
  OptimizerConfig optimizer;
};

class ZeroStrategy final : public ParameterStrategy {
 public:
  // Owns the weights of `params` (a skeleton's parameters: build_model_skeleton), each rank
  // taking from `source` only what it keeps (zeros without a source: a checkpoint is loaded
  // next), with `blocks` transformer blocks. group: the ranks sharing these parameters (null: alone);
  // model_parallel: the ranks holding the model's other parts (tensor parallelism), over which the
  // gradient norm is summed (null: none).
  ZeroStrategy(const ModuleParameters& params, const WeightSource* source, int64_t blocks, const ZeroOptions& options,
               Communicator* group, Communicator* model_parallel = nullptr);

  int64_t numel() const override { return params_->numel(); }
  void begin_step(bool training) override;
  void before_block(int64_t block) override;
  torch::Tensor after_block(int64_t block, const torch::Tensor& output) override;
  void begin_backward(bool reduces) override;
  void end_backward() override;
  void reduce_gradients() override;
  void end_step() override;
  double gradient_norm() override;
  void optimizer_step(double lr, double grad_scale) override;
  int64_t optimizer_steps() const override { return optimizer_->step_count(); }
  StateBytes state_bytes() const override;
  GradientTraffic gradient_traffic() const override;
  CheckpointPart checkpoint_part() override;
  void load_checkpoint(SliceReader& reader, int64_t optimizer_steps) override;
  torch::Tensor full_weights() override { return params_->full_master(); }
  torch::Tensor local_gradient(const std::string& name) override;
  void poison_gradients() override;

  const ZeroParameters& parameters() const { return *params_; }

 private:
  std::unique_ptr<ZeroParameters> params_;
  std::unique_ptr<AdamWOptimizer> optimizer_;
  std::unique_ptr<GradientSynchronizer> sync_;
  std::unique_ptr<ParameterGatherer> gatherer_;  // stage 3
  Communicator* model_parallel_ = nullptr;
  bool reduces_ = false;
};

}  // namespace cr
