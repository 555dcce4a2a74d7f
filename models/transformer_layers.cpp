#include "models/transformer_layers.h"

#include <cmath>
#include <limits>

namespace cr {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelSpec& spec)
    : n_head_(spec.n_head), head_dim_(spec.d_model / spec.n_head), dropout_(spec.dropout) {
  c_attn = register_module("c_attn", torch::nn::Linear(spec.d_model, 3 * spec.d_model));
  c_proj = register_module("c_proj", torch::nn::Linear(spec.d_model, spec.d_model));
  const auto inf = std::numeric_limits<float>::infinity();
  causal_bias_ = register_buffer(
      "causal_bias", torch::full({spec.max_seq_len, spec.max_seq_len}, -inf).triu(1));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  // (B, T, 3, H, D) -> three (B, H, T, D) tensors.
  auto qkv = c_attn(x).view({B, T, 3, n_head_, head_dim_}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  const double dropout = is_training() ? dropout_ : 0.0;
#if TORCH_VERSION_MAJOR >= 2
  auto y = at::scaled_dot_product_attention(q, k, v, {}, dropout, /*is_causal=*/true);
#else
  q = q.reshape({B * n_head_, T, head_dim_});
  k = k.reshape({B * n_head_, T, head_dim_});
  v = v.reshape({B * n_head_, T, head_dim_});
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  auto bias = causal_bias_.slice(0, 0, T).slice(1, 0, T).to(q.scalar_type());
  auto scores = torch::baddbmm(bias, q, k.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  auto probs = torch::softmax(scores, -1);
  if (dropout > 0) probs = torch::dropout(probs, dropout, true);
  auto y = torch::bmm(probs, v).view({B, n_head_, T, head_dim_});
#endif
  y = y.transpose(1, 2).reshape({B, T, C});
  y = c_proj(y);
  return dropout > 0 ? torch::dropout(y, dropout, true) : y;
}

MLPImpl::MLPImpl(const ModelSpec& spec) : dropout_(spec.dropout) {
  c_fc = register_module("c_fc", torch::nn::Linear(spec.d_model, spec.d_ff));
  c_proj = register_module("c_proj", torch::nn::Linear(spec.d_ff, spec.d_model));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  auto y = c_proj(torch::gelu(c_fc(x), "tanh"));
  return (is_training() && dropout_ > 0) ? torch::dropout(y, dropout_, true) : y;
}

TransformerBlockImpl::TransformerBlockImpl(const ModelSpec& spec) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({spec.d_model}).eps(1e-5)));
  attn = register_module("attn", CausalSelfAttention(spec));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({spec.d_model}).eps(1e-5)));
  mlp = register_module("mlp", MLP(spec));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x) {
  auto h = x + attn(ln_1(x));
  return h + mlp(ln_2(h));
}

}  // namespace cr
