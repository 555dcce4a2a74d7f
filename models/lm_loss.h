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

// The gradients a fused loss (this one, the vocab-parallel one) forms chunk by chunk during
// forward, for hidden and weight at a unit output gradient, and hands to backward.
class FusedLossGradients {
 public:
  // Nothing is formed when neither hidden nor weight needs a gradient.
  FusedLossGradients(const torch::Tensor& hidden, const torch::Tensor& weight);
  bool needed() const { return hidden_.defined(); }
  // grad_logits (fp32, in place): d(sum CE)/d(logits) of rows [begin, begin + rows) of hidden.
  // The 1/rows of the mean is applied to the two (much smaller) products instead.
  void add_chunk(torch::Tensor grad_logits, const torch::Tensor& hidden_rows, int64_t begin,
                 const torch::Tensor& weight);
  void save(torch::autograd::AutogradContext* ctx, const torch::Tensor& weight);
  // backward: the gradients of hidden and weight, then `undefined` undefined ones.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 const torch::autograd::variable_list& grad_outputs, size_t undefined);

 private:
  torch::Tensor hidden_, weight_;  // the weight's in fp32 whatever the compute dtype: it sums every chunk
  double inv_rows_ = 0;
};

// Rows per chunk of `rows` rows over a vocabulary of `vocab` (at most `rows`): large enough for
// efficient GEMMs, small enough that a chunk's fp32 log-probabilities stay about 64 MiB on a
// CPU and 1 GiB on a GPU.
int64_t loss_chunk_rows(int64_t rows, int64_t vocab, bool on_gpu);

// The plain reference: logits, log-softmax, NLL. Used by tests and by evaluation of logits.
torch::Tensor linear_cross_entropy_reference(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets);

}  // namespace cr
