#include "models/lm_loss.h"

#include <algorithm>

#include "models/flop_counter.h"

namespace cr {
namespace {

class LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& targets) {
    const int64_t rows = hidden.size(0);
    FusedLossGradients gradients(hidden, weight);
    auto loss_sum = torch::zeros({}, hidden.options().dtype(torch::kFloat));
    const int64_t step = std::max<int64_t>(1, loss_chunk_rows(rows, weight.size(0), hidden.is_cuda()));
    for (int64_t begin = 0; begin < rows; begin += step) {
      const int64_t end = std::min(rows, begin + step);
      auto h = hidden.slice(0, begin, end);
      auto t = targets.slice(0, begin, end).unsqueeze(1);
      // The forward product alone: the gradient products below are backward's work, done early.
      MatmulCounter::count(end - begin, weight.size(1), weight.size(0));
      auto log_probs = torch::log_softmax(torch::mm(h, weight.t()), 1, torch::kFloat);
      loss_sum -= log_probs.gather(1, t).sum();
      if (!gradients.needed()) continue;
      // d(sum CE)/d(logits) = softmax - onehot, built in place.
      auto grad_logits = log_probs.exp_();
      grad_logits.scatter_add_(1, t, torch::full_like(t, -1.0, grad_logits.options()));
      gradients.add_chunk(grad_logits, h, begin, weight);
    }
    gradients.save(ctx, weight);
    return loss_sum * (1.0 / static_cast<double>(rows));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    return FusedLossGradients::backward(ctx, grad_outputs, 1);
  }
};

}  // namespace

FusedLossGradients::FusedLossGradients(const torch::Tensor& hidden, const torch::Tensor& weight)
    : inv_rows_(1.0 / static_cast<double>(hidden.size(0))) {
  if (!hidden.requires_grad() && !weight.requires_grad()) return;
  hidden_ = torch::empty_like(hidden);
  weight_ = torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat));
}

void FusedLossGradients::add_chunk(torch::Tensor grad_logits, const torch::Tensor& hidden_rows, int64_t begin,
                                   const torch::Tensor& weight) {
  const bool fp32 = weight.scalar_type() == torch::kFloat;
  auto g = fp32 ? grad_logits : grad_logits.to(hidden_rows.scalar_type());
  hidden_.slice(0, begin, begin + hidden_rows.size(0)).copy_(torch::mm(g, weight).mul_(inv_rows_));
  if (fp32) {
    weight_.addmm_(g.t(), hidden_rows);  // no vocab x d temporary
  } else {
    weight_.add_(torch::mm(g.t(), hidden_rows));
  }
}

void FusedLossGradients::save(torch::autograd::AutogradContext* ctx, const torch::Tensor& weight) {
  if (needed()) weight_.mul_(inv_rows_);
  ctx->save_for_backward({hidden_, weight_});
  ctx->saved_data["weight_dtype"] = weight.scalar_type();
}

torch::autograd::variable_list FusedLossGradients::backward(torch::autograd::AutogradContext* ctx,
                                                            const torch::autograd::variable_list& grad_outputs,
                                                            size_t undefined) {
  auto saved = ctx->get_saved_variables();
  auto scale = grad_outputs[0];
  auto weight_dtype = ctx->saved_data["weight_dtype"].toScalarType();
  torch::autograd::variable_list grads{saved[0] * scale.to(saved[0].scalar_type()), (saved[1] * scale).to(weight_dtype)};
  grads.resize(2 + undefined);
  return grads;
}

int64_t loss_chunk_rows(int64_t rows, int64_t vocab, bool on_gpu) {
  const int64_t budget_elements = on_gpu ? (int64_t{1} << 28) : (int64_t{1} << 24);
  return std::min(rows, std::clamp<int64_t>(budget_elements / std::max<int64_t>(vocab, 1), 64, std::max<int64_t>(rows, 64)));
}

torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets) {
  return LinearCrossEntropyFunction::apply(hidden, weight, targets);
}

torch::Tensor linear_cross_entropy_reference(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets) {
  auto logits = torch::mm(hidden, weight.t()).to(torch::kFloat);
  return torch::nll_loss(torch::log_softmax(logits, 1), targets);
}

}  // namespace cr
