// Rotary position embeddings in Hugging Face's rotate-half convention: dimension i of the first
// half of a head pairs with dimension i of the second half (not interleaved pairs), rotated by
// position * theta^(-2i / head_dim).
#pragma once

#include <torch/torch.h>

namespace cr {

// x (B, H, T, D) with D even, the token at index t sitting at position first_position + t.
// Angles are computed in fp32 and applied in x's dtype, as Hugging Face does.
torch::Tensor apply_rotary(const torch::Tensor& x, int64_t first_position, double theta);
// The same with each token's position given: (T) int64 (ring attention's zigzag parts).
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& positions, double theta);

}  // namespace cr
