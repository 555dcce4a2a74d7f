// A hook at the start of a layer's backward: strategies that empty a layer's weights after its
// forward (ZeRO-3, Gemini) wrap the layer's output so that backward reaches them, with the
// output's gradient ready, just before the layer's own backward needs its weights again.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace cr {

class LayerBackwardListener {
 public:
  virtual ~LayerBackwardListener() = default;
  virtual void before_layer_backward(int64_t layer) = 0;
};

// `output` itself in forward; its backward calls listener->before_layer_backward(layer) first.
// Returns `output` unchanged when no backward will run (no grad mode, or no gradient needed).
torch::Tensor with_layer_backward_hook(const torch::Tensor& output, LayerBackwardListener* listener, int64_t layer);

}  // namespace cr
