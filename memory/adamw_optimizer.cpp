#include "memory/adamw_optimizer.h"

#include <algorithm>
#include <cmath>

namespace cr {
namespace {

ElementType element_type_of(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat: return ElementType::F32;
    case torch::kHalf: return ElementType::F16;
    case torch::kBFloat16: return ElementType::BF16;
    default: break;
  }
  throw std::invalid_argument("no kernel element type for this dtype");
}

}  // namespace

AdamStepParams adam_step_params(const OptimizerConfig& config, int64_t step, double lr, double grad_scale) {
  AdamStepParams p;
  p.lr = static_cast<float>(lr);
  p.beta1 = static_cast<float>(config.betas[0]);
  p.beta2 = static_cast<float>(config.betas[1]);
  p.eps = static_cast<float>(config.eps);
  p.decoupled_weight_decay = config.name == "adamw";
  p.step = step;
  p.grad_scale = static_cast<float>(grad_scale);
  return p;
}

std::vector<DecaySegment> decay_segments(const std::vector<FlatEntry>& entries, const std::vector<ShardSlice>& slices) {
  // Decay runs (matrices and embeddings decay, biases and gains do not) cut at slice edges.
  std::vector<std::pair<int64_t, bool>> runs;  // (flat begin, decay) of each run, in order
  for (const auto& entry : entries) {
    if (runs.empty() || runs.back().second != entry.decay) runs.emplace_back(entry.offset, entry.decay);
  }
  std::vector<DecaySegment> segments;
  size_t run = 0;
  for (size_t b = 0; b < slices.size(); ++b) {
    const int64_t begin = slices[b].flat_begin, end = begin + slices[b].numel;
    while (run + 1 < runs.size() && runs[run + 1].first <= begin) ++run;
    for (size_t r = run; r < runs.size() && runs[r].first < end; ++r) {
      const int64_t first = std::max(begin, runs[r].first);
      const int64_t last = r + 1 < runs.size() ? std::min(end, runs[r + 1].first) : end;
      if (first < last) segments.push_back({b, first - begin, last - first, runs[r].second});
    }
  }
  return segments;
}

void adamw_update(torch::Tensor w, const torch::Tensor& g, torch::Tensor m, torch::Tensor v, torch::Tensor copy,
                  const AdamStepParams& p) {
  const int64_t count = w.numel();
  if (w.is_cpu()) {
    if (w.scalar_type() != torch::kFloat) {  // no master weights: update the 16-bit weights in place
      adam_step(w.data_ptr(), element_type_of(w.scalar_type()), g.data_ptr<float>(), ElementType::F32,
                m.data_ptr<float>(), v.data_ptr<float>(), count, p);
    } else if (copy.defined()) {
      adam_step_master(w.data_ptr<float>(), g.data_ptr<float>(), ElementType::F32, m.data_ptr<float>(),
                       v.data_ptr<float>(), static_cast<uint16_t*>(copy.data_ptr()),
                       element_type_of(copy.scalar_type()), count, p);
    } else {
      adam_step(w.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), count, p);
    }
    return;
  }
  // Device tensors: the same arithmetic as the kernel, in tensor ops.
  const double lr = p.lr;
  auto scaled = g * p.grad_scale;
  if (!p.decoupled_weight_decay && p.weight_decay != 0) scaled.add_(w, p.weight_decay);
  m.mul_(p.beta1).add_(scaled, 1.0 - p.beta1);
  v.mul_(p.beta2).addcmul_(scaled, scaled, 1.0 - p.beta2);
  const double bc1 = 1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step));
  if (p.decoupled_weight_decay) w.mul_(1.0 - lr * p.weight_decay);
  w.addcdiv_(m, v.sqrt().div_(std::sqrt(bc2)).add_(p.eps), -lr / bc1);
  if (copy.defined()) copy.copy_(w);
}

AdamWOptimizer::AdamWOptimizer(const OptimizerConfig& config, ZeroParameters& params)
    : config_(config), params_(params), segments_(decay_segments(params.entries(), params.owned().slices())) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(params.compute_device());
  exp_avg_ = torch::zeros({params.owned().shard_numel()}, options);
  exp_avg_sq_ = torch::zeros({params.owned().shard_numel()}, options);
}

void AdamWOptimizer::step(double lr, double grad_scale) {
  ++step_count_;
  torch::NoGradGuard no_grad;
  AdamStepParams p = adam_step_params(config_, step_count_, lr, grad_scale);
  const auto& slices = params_.owned().slices();
  for (const auto& [bucket, offset, count, decay] : segments_) {
    p.weight_decay = decay ? static_cast<float>(config_.weight_decay) : 0.0f;
    const int64_t at = slices[bucket].shard_begin + offset;
    auto copy = params_.compute_copy(bucket);
    if (copy.defined()) copy = copy.narrow(0, offset, count);
    adamw_update(params_.weights(bucket).narrow(0, offset, count), params_.gradient(bucket).narrow(0, offset, count),
                 exp_avg_.narrow(0, at, count), exp_avg_sq_.narrow(0, at, count), copy, p);
  }
}

}  // namespace cr
