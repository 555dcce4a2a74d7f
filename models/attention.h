// Causal self-attention shared by the model zoo: the attention core (grouped-query aware, with
// an optional KV cache) and the separate-projection attention layer of OPT and LLaMA. GPT-2's
// fused-projection layer (transformer_layers.h) uses the same core.
#pragma once

#include <string>

#include <torch/torch.h>

#include "models/kv_cache.h"
#include "models/linear.h"
#include "models/model_spec.h"
#include "models/tensor_parallel.h"

namespace cr {

// q (B, H, Tq, D); k, v (B, H_kv, Tk, D), H a multiple of H_kv: query head h reads key/value head
// h / (H / H_kv), as Hugging Face's repeat_kv. Query i sits at position Tk - Tq + i and sees the
// keys up to that position. Scaled by 1/sqrt(D). Returns (B, H, Tq, D).
torch::Tensor causal_attention(const torch::Tensor& q, torch::Tensor k, torch::Tensor v, double dropout);

// q (B, H, T, D) and this pass's k, v (B, H_kv, T, D): attends (through `layer` of the cache when
// there is one) and merges the heads into (B, T, H * D).
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, KVCache* cache,
                     int64_t layer, double dropout);

// Projected (B, T, H, D) -> (B, H, T, D) heads to attend with; under all_to_all sequence
// parallelism T is this rank's part of the sequence going in and the whole coming out, with
// H / P of the heads.
torch::Tensor attention_heads(const torch::Tensor& projected, const TensorParallel& tp);
// A layer's attention over attention_heads()'s q, k, v as the layout runs it: ring attention
// around the sequence group (ring_attn), else attend() with all_to_all's exchange back to this
// rank's part of the sequence. Returns (B, T, H * D), T this rank's tokens.
torch::Tensor attend_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, KVCache* cache,
                           int64_t layer, double dropout, const TensorParallel& tp);

// Separate q/k/v/output projections (biases per spec.bias), grouped-query attention with
// spec.n_kv_head key/value heads, rotary positions when spec.position is "rotary". Heads are
// split over the tensor group.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  // output_name: Hugging Face's name for the output projection (OPT out_proj, LLaMA o_proj).
  SelfAttentionImpl(const ModelSpec& spec, int64_t layer, const std::string& output_name, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache);

  ColumnParallelLinear q_proj{nullptr};
  KeyValueLinear k_proj{nullptr};
  KeyValueLinear v_proj{nullptr};
  RowParallelLinear output_proj{nullptr};

 private:
  TensorParallel tp_;
  int64_t layer_;
  int64_t n_head_;     // this rank's query heads
  int64_t n_kv_head_;  // and key/value heads
  int64_t head_dim_;
  double dropout_;
  bool rotary_;
  double rope_theta_;
};
TORCH_MODULE(SelfAttention);

}  // namespace cr
