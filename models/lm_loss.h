// The language-model head and its loss in one step: mean cross-entropy of hidden @ weight^T
// against targets. Computed in row chunks with the gradient formed in the same pass, so the
// full (tokens x vocab) logits never exist: with a 50k vocabulary they would dominate memory
// traffic of a small model.
#pragma once

#include <torch/torch.h>

namespace cr {

// hidden (N, C), weight (V, C), targets (N) int64 -> scalar mean loss (fp32).
torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets);

// Rows per chunk of `rows` rows over a vocabulary of `vocab` (at most `rows`): large enough for
// efficient GEMMs, small enough that a chunk's fp32 log-probabilities stay about 64 MiB on a
// CPU and 1 GiB on a GPU.
int64_t loss_chunk_rows(int64_t rows, int64_t vocab, bool on_gpu);

// The plain reference: logits, log-softmax, NLL. Used by tests and by evaluation of logits.
torch::Tensor linear_cross_entropy_reference(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets);

}  // namespace cr
