#include "models/transformer_layers.h"

#include "models/activation.h"
#include "models/attention.h"

namespace cr {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelSpec& spec, int64_t layer)
    : layer_(layer), n_head_(spec.n_head), head_dim_(spec.d_model / spec.n_head), dropout_(spec.dropout) {
  c_attn = register_module("c_attn", Linear(spec.d_model, 3 * spec.d_model));
  c_proj = register_module("c_proj", Linear(spec.d_model, spec.d_model));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, KVCache* cache) {
  const int64_t B = x.size(0), T = x.size(1);
  // (B, T, 3, H, D) -> three (B, H, T, D) tensors.
  auto qkv = c_attn(x).view({B, T, 3, n_head_, head_dim_}).permute({2, 0, 3, 1, 4});
  const double dropout = is_training() ? dropout_ : 0.0;
  auto y = c_proj(attend(qkv[0], qkv[1], qkv[2], cache, layer_, dropout));
  return dropout > 0 ? torch::dropout(y, dropout, true) : y;
}

MLPImpl::MLPImpl(const ModelSpec& spec) : activation_(spec.activation), dropout_(spec.dropout) {
  c_fc = register_module("c_fc", Linear(spec.d_model, spec.d_ff));
  c_proj = register_module("c_proj", Linear(spec.d_ff, spec.d_model));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  auto y = c_proj(activate(activation_, c_fc(x)));
  return (is_training() && dropout_ > 0) ? torch::dropout(y, dropout_, true) : y;
}

TransformerBlockImpl::TransformerBlockImpl(const ModelSpec& spec, int64_t layer) {
  ln_1 = register_module("ln_1", Norm(spec, spec.d_model));
  attn = register_module("attn", CausalSelfAttention(spec, layer));
  ln_2 = register_module("ln_2", Norm(spec, spec.d_model));
  mlp = register_module("mlp", MLP(spec));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, KVCache* cache) {
  auto h = x + attn(ln_1(x), cache);
  return h + mlp(ln_2(h));
}

}  // namespace cr
