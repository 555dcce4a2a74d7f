#include "models/gpt2.h"

#include <cmath>

#include "core/error.h"
#include "models/lm_loss.h"

namespace cr {

GPT2Impl::GPT2Impl(const ModelSpec& spec) : spec_(spec) {
  validate_model_spec(spec);
  wte = register_module("wte", torch::nn::Embedding(spec.vocab_size, spec.d_model));
  wpe = register_module("wpe", torch::nn::Embedding(spec.max_seq_len, spec.d_model));
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.n_layer; ++i) {
    blocks_.push_back(TransformerBlock(spec));
    h->push_back(blocks_.back());
  }
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({spec.d_model}).eps(1e-5)));
  reset_parameters();
}

void GPT2Impl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const double std = 0.02;
  const double residual_std = std / std::sqrt(2.0 * static_cast<double>(spec_.n_layer));
  wte->weight.normal_(0.0, std);
  wpe->weight.normal_(0.0, std);
  for (auto& block : blocks_) {
    for (auto* linear : {&block->attn->c_attn, &block->attn->c_proj, &block->mlp->c_fc, &block->mlp->c_proj}) {
      (*linear)->weight.normal_(0.0, std);
      (*linear)->bias.zero_();
    }
    block->attn->c_proj->weight.normal_(0.0, residual_std);
    block->mlp->c_proj->weight.normal_(0.0, residual_std);
    for (auto* norm : {&block->ln_1, &block->ln_2}) {
      (*norm)->weight.fill_(1.0);
      (*norm)->bias.zero_();
    }
  }
  ln_f->weight.fill_(1.0);
  ln_f->bias.zero_();
}

torch::Tensor GPT2Impl::embed(const torch::Tensor& tokens) {
  const int64_t T = tokens.size(1);
  if (T > spec_.max_seq_len) {
    fail("sequence length {} exceeds model.max_seq_len {}", T, spec_.max_seq_len);
  }
  auto positions = torch::arange(T, tokens.options().dtype(torch::kLong));
  auto x = wte(tokens) + wpe(positions);
  return (is_training() && spec_.dropout > 0) ? torch::dropout(x, spec_.dropout, true) : x;
}

torch::Tensor GPT2Impl::run_blocks(torch::Tensor x, int64_t first, int64_t last) {
  for (int64_t i = first; i < last; ++i) x = blocks_[i]->forward(x);
  return x;
}

torch::Tensor GPT2Impl::head_loss(const torch::Tensor& x, const torch::Tensor& targets) {
  auto hidden = ln_f(x);
  return linear_cross_entropy(hidden.reshape({-1, spec_.d_model}), wte->weight, targets.reshape({-1}));
}

torch::Tensor GPT2Impl::head_logits(const torch::Tensor& x) {
  return torch::matmul(ln_f(x), wte->weight.t());
}

torch::Tensor GPT2Impl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  return head_loss(run_blocks(embed(tokens), 0, spec_.n_layer), targets);
}

torch::Tensor GPT2Impl::logits(const torch::Tensor& tokens) {
  return head_logits(run_blocks(embed(tokens), 0, spec_.n_layer));
}

}  // namespace cr
