// Ring attention (Liu et al.) for sequence parallelism on its own axis (parallel.sequence.mode
// ring_attn): each rank of the sequence group holds 1/P of every sequence; key/value blocks
// travel around the ring while each rank merges the attention of its queries over them with an
// online softmax, so a rank holds one (T/P x T/P) block of scores at a time (two in backward),
// never the whole T x T. Backward recomputes each block's scores (as flash attention does) and
// sends the key/value gradients around the ring with their blocks, so they arrive home after a
// full turn.
//
// Causal load balance (zigzag): the sequence is cut into 2P equal parts and rank r holds parts
// r and 2P - 1 - r, so every rank has as many early (cheap) as late (expensive) queries.
#pragma once

#include <torch/torch.h>

namespace cr {

class Communicator;

// The positions of the tokens that rank `rank` of `size` holds in a sequence of `length`
// (divisible by 2 size): parts rank and 2 size - 1 - rank of 2 size equal parts, in that order.
torch::Tensor zigzag_positions(int64_t length, int rank, int size);

// q (B, H, T, D) and k, v (B, H_kv, T, D), H a multiple of H_kv: this rank's tokens (zigzag
// positions of a sequence of T x group size) of a causal sequence split over `group`. Scaled by
// 1/sqrt(D); returns (B, H, T, D) in q's dtype.
torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             Communicator* group);

}  // namespace cr
