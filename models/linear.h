// The zoo's linear layer: torch::nn::Linear (same parameters, names and initialisation) whose
// autograd keeps the weight parameter itself for backward rather than a view of its storage.
// Under ZeRO stage 3 a layer's weights are released after forward and gathered again before
// backward; backward must read the gathered weights, and forward's storage must be freeable.
#pragma once

#include <torch/torch.h>

namespace cr {

// y = x W^T + b with the weight saved by reference.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

class LinearImpl : public torch::nn::LinearImpl {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x) { return linear(x, weight, bias); }
};
TORCH_MODULE(Linear);

}  // namespace cr
