// The zoo's linear layer: torch::nn::Linear's parameters and names, declared without storage
// (parameter_init.h; weight N(0, 0.02), bias zero), with an autograd that keeps the weight
// parameter itself for backward rather than a view of its storage.
// Under ZeRO stage 3 a layer's weights are released after forward and gathered again before
// backward; backward must read the gathered weights, and forward's storage must be freeable.
#pragma once

#include <torch/torch.h>

#include "models/parameter_init.h"

namespace cr {

// y = x W^T + b with the weight saved by reference.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

class LinearImpl : public DeferredModule {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x) { return linear(x, weight, bias); }

  torch::Tensor weight;  // (out_features, in_features)
  torch::Tensor bias;    // undefined without bias
};
TORCH_MODULE(Linear);

}  // namespace cr
