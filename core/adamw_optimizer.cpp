#include "core/adamw_optimizer.h"

#include <algorithm>
#include <tuple>

#include "kernels/adamw.h"

namespace cr {

AdamWOptimizer::AdamWOptimizer(const OptimizerConfig& config, FlatParameters& params,
                               std::optional<std::pair<int64_t, int64_t>> shard)
    : config_(config), params_(params) {
  std::tie(shard_begin_, shard_end_) = shard.value_or(std::make_pair(int64_t{0}, params.numel()));
  const int64_t owned = shard_end_ - shard_begin_;
  exp_avg_ = torch::zeros({owned}, params.master().options());
  exp_avg_sq_ = torch::zeros({owned}, params.master().options());
  for (bool decay : {true, false}) {
    for (const auto& [begin, end] : params.decay_ranges(decay)) {
      const int64_t first = std::max(begin, shard_begin_), last = std::min(end, shard_end_);
      if (first < last) ranges_.push_back({first, last, decay});
    }
  }
}

void AdamWOptimizer::step(double lr, double grad_scale) {
  ++step_count_;
  torch::NoGradGuard no_grad;
  AdamStepParams p;
  p.lr = static_cast<float>(lr);
  p.beta1 = static_cast<float>(config_.betas[0]);
  p.beta2 = static_cast<float>(config_.betas[1]);
  p.eps = static_cast<float>(config_.eps);
  p.decoupled_weight_decay = config_.name == "adamw";
  p.step = step_count_;
  p.grad_scale = static_cast<float>(grad_scale);
  auto& master = params_.master();
  auto& grad = params_.master_grad();
  for (const auto& [begin, end, decay] : ranges_) {
    const int64_t count = end - begin;
    p.weight_decay = decay ? static_cast<float>(config_.weight_decay) : 0.0f;
    const int64_t moment = begin - shard_begin_;  // where the range starts in the shard's moments
    if (master.is_cpu()) {
      adam_step(master.data_ptr<float>() + begin, grad.data_ptr<float>() + begin,
                exp_avg_.data_ptr<float>() + moment, exp_avg_sq_.data_ptr<float>() + moment, count, p);
      continue;
    }
    // Device tensors: the same arithmetic as the kernel, in tensor ops.
    auto w = master.narrow(0, begin, count), m = exp_avg_.narrow(0, moment, count);
    auto v = exp_avg_sq_.narrow(0, moment, count);
    auto g = grad.narrow(0, begin, count) * p.grad_scale;
    if (!p.decoupled_weight_decay && p.weight_decay != 0) g.add_(w, p.weight_decay);
    m.mul_(p.beta1).add_(g, 1.0 - p.beta1);
    v.mul_(p.beta2).addcmul_(g, g, 1.0 - p.beta2);
    const double bc1 = 1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step));
    const double bc2 = 1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step));
    if (p.decoupled_weight_decay) w.mul_(1.0 - lr * p.weight_decay);
    w.addcdiv_(m, v.sqrt().div_(std::sqrt(bc2)).add_(p.eps), -lr / bc1);
  }
}

}  // namespace cr
