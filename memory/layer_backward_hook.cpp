#include "memory/layer_backward_hook.h"

namespace cr {
namespace {

// Identity in forward; in backward, it runs before the layer's own backward (it consumes the
// gradient of the layer's output).
class LayerBackwardHook : public torch::autograd::Function<LayerBackwardHook> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               LayerBackwardListener* listener, int64_t layer) {
    ctx->saved_data["listener"] = reinterpret_cast<int64_t>(listener);
    ctx->saved_data["layer"] = layer;
    return x.view_as(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* listener = reinterpret_cast<LayerBackwardListener*>(ctx->saved_data["listener"].toInt());
    listener->before_layer_backward(ctx->saved_data["layer"].toInt());
    return {grads[0], torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor with_layer_backward_hook(const torch::Tensor& output, LayerBackwardListener* listener, int64_t layer) {
  if (!torch::GradMode::is_enabled() || !output.requires_grad()) return output;
  return LayerBackwardHook::apply(output, listener, layer);
}

}  // namespace cr
