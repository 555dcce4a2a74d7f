// Where parameters meet activations. Activations run in the parameters' dtype, except fp16 on a
// CPU whose LibTorch has no fp16 kernels (Debian's 1.13 lacks fp16 addmm, layer_norm, softmax):
// there weights and their gradients stay fp16 (so loss scaling, overflow and fp16 rounding of
// weights and gradients are real) while activations are computed in fp32.
#pragma once

#include <torch/torch.h>

namespace cr {

// The dtype activations, and so the matmuls, run in for parameters of `dtype` on `device`.
torch::ScalarType activation_dtype(torch::ScalarType dtype, const torch::Device& device);

// Embedding outputs enter the model through this: the activation dtype for them.
torch::Tensor as_activation(const torch::Tensor& x);

// A parameter as an operation on `activation` needs it (cast with autograd when they differ).
torch::Tensor cast_to_activation(const torch::Tensor& param, const torch::Tensor& activation);

// Whether an element-wise op on x should run in fp32 between conversions: LibTorch's CPU
// kernels for bf16 GELU and LayerNorm run 2x and 6x slower (forward + backward) than the fp32
// ones plus both conversions (measured on 1.13).
bool widen_on_cpu(const torch::Tensor& x);

}  // namespace cr
