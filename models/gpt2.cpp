#include "models/gpt2.h"

#include <cmath>

#include "models/mixed_precision.h"

namespace cr {

GPT2Impl::GPT2Impl(const ModelSpec& spec, const TensorParallel& tp) : CausalLMImpl(spec, "gpt2", tp) {
  wte = register_module("wte", VocabParallelEmbedding(spec.vocab_size, spec.d_model, tp));
  wpe = register_module("wpe", Embedding(spec.max_seq_len, spec.d_model, tp.grid.get()));
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.n_layer; ++i) {
    blocks_.push_back(TransformerBlock(spec, i, tp));
    h->push_back(blocks_.back());
  }
  ln_f = register_module("ln_f", Norm(spec, spec.d_model, tp));
  sum_partial_gradient(wpe->weight, tp);  // each rank looks up its part of the positions
  // GPT-2 scales the residual projections' initial weights by 1/sqrt(2 n_layer).
  const double residual_std = kInitStd / std::sqrt(2.0 * static_cast<double>(spec.n_layer));
  for (auto& block : blocks_) {
    block->attn->c_proj->set_init("weight", normal_init(residual_std));
    block->mlp->c_proj->set_init("weight", normal_init(residual_std));
  }
}

torch::Tensor GPT2Impl::embed(const torch::Tensor& tokens, const torch::Tensor& positions) {
  const auto local_positions = local_sequence(position_ids(tokens, positions, spec_.max_seq_len), tp_, 0);
  auto x = as_activation(wte(tokens) + wpe(local_positions));
  return (is_training() && spec_.dropout > 0) ? torch::dropout(x, spec_.dropout, true) : x;
}

torch::Tensor GPT2Impl::run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache) {
  for (int64_t i = first; i < last; ++i) x = blocks_[i]->forward(x, cache);
  return x;
}

}  // namespace cr
