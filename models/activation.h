// The MLP activations by their Hugging Face names (spec.activation).
#pragma once

#include <string>

#include <torch/torch.h>

#include "models/mixed_precision.h"

namespace cr {

inline torch::Tensor activate(const std::string& name, const torch::Tensor& x) {
  if (name == "relu") return torch::relu(x);
  if (name == "silu") return torch::silu(x);
  if (widen_on_cpu(x)) return torch::gelu(x.to(torch::kFloat), "tanh").to(x.scalar_type());
  return torch::gelu(x, "tanh");  // gelu_new
}

}  // namespace cr
