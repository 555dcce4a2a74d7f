#include "models/attention.h"

#include <cmath>
#include <limits>

#include "core/base/error.h"
#include "models/activation_checkpoint.h"
#include "models/flop_counter.h"
#include "models/ring_attention.h"
#include "models/rotary.h"

namespace cr {

torch::Tensor causal_attention(const torch::Tensor& q, torch::Tensor k, torch::Tensor v, double dropout) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t H_kv = k.size(1), Tk = k.size(2);
  if (H_kv != H) {
    k = k.unsqueeze(2).expand({B, H_kv, H / H_kv, Tk, D}).reshape({B, H, Tk, D});
    v = v.unsqueeze(2).expand({B, H_kv, H / H_kv, Tk, D}).reshape({B, H, Tk, D});
  }
  const int64_t cached = Tk - Tq;
  // Both paths compute every (query, key) score, the masked ones too: q k^T, then probs v.
  MatmulCounter::count(B * H * Tq, D, Tk);
  MatmulCounter::count(B * H * Tq, Tk, D);
#if TORCH_VERSION_MAJOR >= 2
  if (cached == 0) return at::scaled_dot_product_attention(q, k, v, {}, dropout, /*is_causal=*/true);
  // is_causal aligns the mask top-left; with cached keys the queries sit at the bottom right.
  auto allowed = torch::ones({Tq, Tk}, q.options().dtype(torch::kBool)).tril(cached);
  return at::scaled_dot_product_attention(q, k, v, allowed, dropout, /*is_causal=*/false);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto inf = std::numeric_limits<float>::infinity();
  auto bias = torch::full({Tq, Tk}, -inf, q.options()).triu(cached + 1);  // 0 where allowed
  auto scores = torch::baddbmm(bias, q.reshape({B * H, Tq, D}), k.reshape({B * H, Tk, D}).transpose(1, 2),
                               /*beta=*/1.0, /*alpha=*/scale);
  auto probs = torch::softmax(scores, -1);
  if (dropout > 0) probs = torch::dropout(probs, dropout, true);
  return torch::bmm(probs, v.reshape({B * H, Tk, D})).view({B, H, Tq, D});
#endif
}

torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, KVCache* cache,
                     int64_t layer, double dropout) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  torch::Tensor y;
  if (cache) {
    CR_CHECK(dropout == 0, "attention over a KV cache runs without dropout");
    y = cache->attend(layer, q, k, v);
  } else if (SelectiveRecompute::active()) {
    y = recompute_in_backward(
        [dropout](const std::vector<torch::Tensor>& in) { return causal_attention(in[0], in[1], in[2], dropout); },
        {q, k, v}, dropout > 0);
  } else {
    y = causal_attention(q, k, v, dropout);
  }
  return y.transpose(1, 2).reshape({B, T, H * D});
}

torch::Tensor attention_heads(const torch::Tensor& projected, const TensorParallel& tp) {
  return sequence_to_heads(projected, tp).transpose(1, 2);
}

torch::Tensor attend_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, KVCache* cache,
                           int64_t layer, double dropout, const TensorParallel& tp) {
  if (tp.ring_attention()) {
    // Training only (the mesh refuses dropout with ring_attn; generation runs without sequence ranks).
    CR_CHECK(!cache && dropout == 0, "ring attention runs without a KV cache or attention dropout");
    const auto y = ring_attention(q, k, v, tp.sequence_group);
    return y.transpose(1, 2).reshape({y.size(0), y.size(2), -1});
  }
  const auto y = attend(q, k, v, cache, layer, dropout);
  if (!tp.ulysses()) return y;
  auto local = heads_to_sequence(y.view({y.size(0), y.size(1), -1, q.size(3)}), tp);
  return local.reshape({local.size(0), local.size(1), -1});
}

SelfAttentionImpl::SelfAttentionImpl(const ModelSpec& spec, int64_t layer, const std::string& output_name,
                                     const TensorParallel& tp)
    : tp_(tp),
      layer_(layer),
      n_head_(spec.n_head / tp.head_parts()),
      head_dim_(spec.d_model / spec.n_head),
      dropout_(spec.dropout),
      rotary_(spec.position == "rotary"),
      rope_theta_(spec.rope_theta) {
  const int64_t d = spec.d_model;
  q_proj = register_module("q_proj", ColumnParallelLinear(d, d, spec.bias, tp));
  k_proj = register_module("k_proj", KeyValueLinear(spec, tp));
  v_proj = register_module("v_proj", KeyValueLinear(spec, tp));
  output_proj = register_module(output_name, RowParallelLinear(d, d, spec.bias, tp));
  n_kv_head_ = k_proj->local_heads();
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, KVCache* cache) {
  // The projections see the whole sequence also when x is this rank's part of it (split_gather).
  auto heads = [&](const torch::Tensor& t, int64_t n) {
    return attention_heads(t.view({t.size(0), t.size(1), n, head_dim_}), tp_);
  };
  const auto input = enter_tensor_region(x, tp_);
  auto q = heads(q_proj->project(input), n_head_);
  auto k = heads(k_proj->project(input), n_kv_head_);
  auto v = heads(v_proj->project(input), n_kv_head_);
  if (rotary_ && tp_.ring_attention()) {
    // This rank's tokens sit at its zigzag positions.
    const auto positions = zigzag_positions(q.size(2) * tp_.sequence_size, tp_.sequence_rank, tp_.sequence_size);
    q = apply_rotary(q, positions.to(q.device()), rope_theta_);
    k = apply_rotary(k, positions.to(k.device()), rope_theta_);
  } else if (rotary_ && cache) {
    const auto positions = cache->positions(layer_, q.size(2)).to(q.device());
    q = apply_rotary(q, positions, rope_theta_);
    k = apply_rotary(k, positions, rope_theta_);
  } else if (rotary_) {
    q = apply_rotary(q, 0, rope_theta_);
    k = apply_rotary(k, 0, rope_theta_);
  }
  const double dropout = is_training() ? dropout_ : 0.0;
  auto y = output_proj(attend_heads(q, k, v, cache, layer_, dropout, tp_));
  return dropout > 0 ? torch::dropout(y, dropout, true) : y;
}

}  // namespace cr
