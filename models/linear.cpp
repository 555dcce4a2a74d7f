#include "models/linear.h"

#include "models/flop_counter.h"
#include "models/mixed_precision.h"

namespace cr {
namespace {

thread_local DeferredWeightGradients* g_deferred = nullptr;

// dL/dx and dL/dW (and dL/db) from the output gradient, as torch::nn::Linear's autograd forms them.
torch::autograd::variable_list linear_backward(torch::autograd::AutogradContext* ctx, const torch::Tensor& grad_out,
                                               bool has_bias) {
  const auto saved = ctx->get_saved_variables();
  const auto& x = saved[0];
  const auto& weight = saved[1];
  const auto grad = grad_out.reshape({-1, weight.size(0)});
  torch::autograd::variable_list grads(has_bias ? 3 : 2);
  if (ctx->needs_input_grad(0)) grads[0] = grad.mm(weight).view(x.sizes());
  if (ctx->needs_input_grad(1)) {
    if (g_deferred) {
      g_deferred->record(weight, x.reshape({-1, weight.size(1)}), grad);
    } else {
      grads[1] = grad.t().mm(x.reshape({-1, weight.size(1)}));
    }
  }
  if (has_bias && ctx->needs_input_grad(2)) grads[2] = grad.sum(0);
  return grads;
}

class BiasedLinearFunction : public torch::autograd::Function<BiasedLinearFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    return torch::linear(x, weight, bias);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return linear_backward(ctx, grads[0], /*has_bias=*/true);
  }
};

class UnbiasedLinearFunction : public torch::autograd::Function<UnbiasedLinearFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return torch::linear(x, weight);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return linear_backward(ctx, grads[0], /*has_bias=*/false);
  }
};

}  // namespace

void DeferredWeightGradients::record(torch::Tensor weight, torch::Tensor input, torch::Tensor output_gradient) {
  items_.push_back({std::move(weight), std::move(input), std::move(output_gradient)});
}

void DeferredWeightGradients::run() {
  // Layer by layer, so that one weight gradient at a time exists outside its accumulator.
  for (Item& item : items_) {
    torch::autograd::backward({item.weight}, {item.output_gradient.t().mm(item.input)});
    item = Item{};
  }
  items_.clear();
}

WeightGradientDeferral::WeightGradientDeferral(DeferredWeightGradients& into) : outer_(g_deferred) {
  g_deferred = &into;
}

WeightGradientDeferral::~WeightGradientDeferral() { g_deferred = outer_; }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  MatmulCounter::count(x.numel() / x.size(-1), weight.size(1), weight.size(0));
  if (bias.defined()) {
    return BiasedLinearFunction::apply(x, cast_to_activation(weight, x), cast_to_activation(bias, x));
  }
  return UnbiasedLinearFunction::apply(x, cast_to_activation(weight, x));
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = declare_parameter("weight", {out_features, in_features}, normal_init(kInitStd));
  if (with_bias) bias = declare_parameter("bias", {out_features}, constant_init(0.0));
}

}  // namespace cr
