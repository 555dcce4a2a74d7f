// The MLP activations by their Hugging Face names (spec.activation).
#pragma once

#include <string>

#include <torch/torch.h>

namespace cr {

inline torch::Tensor activate(const std::string& name, const torch::Tensor& x) {
  if (name == "relu") return torch::relu(x);
  if (name == "silu") return torch::silu(x);
  return torch::gelu(x, "tanh");  // gelu_new
}

}  // namespace cr
