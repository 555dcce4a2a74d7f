#include "memory/zero_strategy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/base/crc32.h"
#include "core/base/error.h"
#include "memory/owned_state.h"
#include "memory/rank_reduce.h"

namespace cr {

ParameterStrategy::~ParameterStrategy() = default;

uint32_t ParameterStrategy::weights_crc32() {
  const auto weights = full_weights().to(torch::kCPU).contiguous();
  return crc32(weights.data_ptr<float>(), static_cast<size_t>(weights.numel()) * sizeof(float));
}

ZeroStrategy::ZeroStrategy(const ModuleParameters& params, const WeightSource* source, int64_t blocks,
                           const ZeroOptions& options, Communicator* group, Communicator* model_parallel)
    : model_parallel_(model_parallel) {
  const int size = group ? group->size() : 1;
  params_ = std::make_unique<ZeroParameters>(
      params, source, options.device, options.compute_dtype, options.stage,
      ShardLayout(params.buckets(options.bucket_bytes), group ? group->rank() : 0, size), size > 1 ? group : nullptr,
      options.master_weights);
  optimizer_ = std::make_unique<AdamWOptimizer>(options.optimizer, *params_);
  sync_ = std::make_unique<GradientSynchronizer>(*params_, options.overlap);
  if (options.stage == 3) gatherer_ = std::make_unique<ParameterGatherer>(*params_, blocks, options.overlap);
}

void ZeroStrategy::begin_step(bool training) {
  if (training) params_->zero_grad();
  if (gatherer_) gatherer_->gather_outer();
}

void ZeroStrategy::before_block(int64_t block) {
  if (gatherer_) gatherer_->before_layer(block);
}

torch::Tensor ZeroStrategy::after_block(int64_t block, const torch::Tensor& output) {
  return gatherer_ ? gatherer_->after_layer(block, output) : output;
}

void ZeroStrategy::begin_backward(bool reduces) {
  reduces_ = reduces;
  sync_->begin_backward(reduces);
}

void ZeroStrategy::end_backward() {
  // The step's reducing backward finishes in reduce_gradients(), where its wait is measured.
  if (!reduces_) sync_->end_backward();
}

void ZeroStrategy::reduce_gradients() {
  sync_->end_backward();
  // Backward is over: stage 3's gathered weights go before the optimizer allocates anything.
  if (gatherer_) gatherer_->release_all();
}

void ZeroStrategy::end_step() {
  if (gatherer_) gatherer_->release_all();
}

double ZeroStrategy::gradient_norm() {
  return std::sqrt(summed_over(model_parallel_, params_->gradient_sum_of_squares()));
}

void ZeroStrategy::optimizer_step(double lr, double grad_scale) {
  optimizer_->step(lr, grad_scale);
  params_->publish();
}

StateBytes ZeroStrategy::state_bytes() const {
  StateBytes bytes;
  bytes.parameters = params_->compute_bytes() + (gatherer_ ? gatherer_->peak_gathered_bytes() : 0);
  bytes.master_weights = params_->master_bytes();
  bytes.gradients = params_->gradient_bytes() + sync_->peak_staging_bytes();
  bytes.optimizer_states = optimizer_->state_bytes();
  return bytes;
}

GradientTraffic ZeroStrategy::gradient_traffic() const {
  return {sync_->bytes_sent_per_step(), sync_->bucket_count(), sync_->started_during_backward()};
}

CheckpointPart ZeroStrategy::checkpoint_part() {
  return owned_state_part(params_->entries(), params_->reduced(), params_->owned(),
                          {params_->owned_weights(), optimizer_->exp_avg(), optimizer_->exp_avg_sq()});
}

void ZeroStrategy::load_checkpoint(SliceReader& reader, int64_t optimizer_steps) {
  const std::vector<torch::Tensor> state = read_owned_state(reader, params_->entries(), params_->owned());
  params_->load_owned_weights(state[0]);
  torch::NoGradGuard no_grad;
  optimizer_->exp_avg().copy_(state[1]);
  optimizer_->exp_avg_sq().copy_(state[2]);
  optimizer_->set_step_count(optimizer_steps);
}

torch::Tensor ZeroStrategy::local_gradient(const std::string& name) {
  if (params_->stage() >= 2) {
    fail("ZeRO stage {} reduces gradients as backward produces them: no whole local gradient of {} exists",
         params_->stage(), name);
  }
  for (const auto& entry : params_->entries()) {
    if (entry.name == name) return params_->gradient_sums().narrow(0, entry.offset, entry.numel).view(entry.shape);
  }
  fail("no parameter named {} on this rank", name);
}

void ZeroStrategy::poison_gradients() { params_->gradient(0).fill_(std::numeric_limits<float>::infinity()); }

}  // namespace cr
