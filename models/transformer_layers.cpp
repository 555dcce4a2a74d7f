#include "models/transformer_layers.h"

#include "models/activation.h"
#include "models/attention.h"

namespace cr {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp)
    : tp_(tp),
      layer_(layer),
      n_head_(spec.n_head / tp.head_parts()),
      head_dim_(spec.d_model / spec.n_head),
      dropout_(spec.dropout) {
  c_attn = register_module("c_attn", ColumnParallelLinear(spec.d_model, spec.d_model, true, tp, /*fused_parts=*/3));
  c_proj = register_module("c_proj", RowParallelLinear(spec.d_model, spec.d_model, true, tp));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, KVCache* cache) {
  // (B, T, 3, H, D) -> three (B, H, T, D) tensors; T is the whole sequence also when x is this
  // rank's part of it (split_gather).
  auto projected = c_attn(x);
  const int64_t B = projected.size(0), T = projected.size(1);
  auto qkv = projected.view({B, T, 3, n_head_, head_dim_});
  auto heads = [&](int64_t part) { return attention_heads(qkv.select(2, part), tp_); };
  const double dropout = is_training() ? dropout_ : 0.0;
  auto y = c_proj(attend_heads(heads(0), heads(1), heads(2), cache, layer_, dropout, tp_));
  return dropout > 0 ? torch::dropout(y, dropout, true) : y;
}

MLPImpl::MLPImpl(const ModelSpec& spec, const TensorParallel& tp) : activation_(spec.activation), dropout_(spec.dropout) {
  c_fc = register_module("c_fc", ColumnParallelLinear(spec.d_model, spec.d_ff, true, tp));
  c_proj = register_module("c_proj", RowParallelLinear(spec.d_ff, spec.d_model, true, tp));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  auto y = c_proj(activate(activation_, c_fc(x)));
  return (is_training() && dropout_ > 0) ? torch::dropout(y, dropout_, true) : y;
}

TransformerBlockImpl::TransformerBlockImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp) {
  ln_1 = register_module("ln_1", Norm(spec, spec.d_model, tp));
  attn = register_module("attn", CausalSelfAttention(spec, layer, tp));
  ln_2 = register_module("ln_2", Norm(spec, spec.d_model, tp));
  mlp = register_module("mlp", MLP(spec, tp));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, KVCache* cache) {
  auto h = x + attn(ln_1(x), cache);
  return h + mlp(ln_2(h));
}

}  // namespace cr
