// The zoo's linear layer: torch::nn::Linear's parameters and names, declared without storage
// (parameter_init.h; weight N(0, 0.02), bias zero), with an autograd that keeps the weight
// parameter itself for backward rather than a view of its storage.
// Under ZeRO stage 3 a layer's weights are released after forward and gathered again before
// backward; backward must read the gathered weights, and forward's storage must be freeable.
#pragma once

#include <torch/torch.h>

#include "models/parameter_init.h"

namespace cr {

// Zero-bubble pipelines split a backward into the part that gives the input's gradient, which the
// previous stage waits for, and the weights' gradients, computed later in what would be idle time.
// While a WeightGradientDeferral is alive on the thread, linear layers' backward computes the
// input's (and the bias's) gradient only and records the weight's matmul here; run() does those
// matmuls and hands each weight its gradient through autograd, so that accumulation and its hooks
// (gradient reduction) happen as in an ordinary backward.
class DeferredWeightGradients {
 public:
  void record(torch::Tensor weight, torch::Tensor input, torch::Tensor output_gradient);
  void run();  // and forget them
  bool empty() const { return items_.empty(); }

 private:
  struct Item {
    torch::Tensor weight;           // the layer's weight input: the parameter or its cast
    torch::Tensor input;            // (rows, in_features)
    torch::Tensor output_gradient;  // (rows, out_features)
  };
  std::vector<Item> items_;
};

class WeightGradientDeferral {
 public:
  explicit WeightGradientDeferral(DeferredWeightGradients& into);
  ~WeightGradientDeferral();
  WeightGradientDeferral(const WeightGradientDeferral&) = delete;
  WeightGradientDeferral& operator=(const WeightGradientDeferral&) = delete;

 private:
  DeferredWeightGradients* outer_;
};

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
