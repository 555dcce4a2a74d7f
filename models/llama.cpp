#include "models/llama.h"

#include "models/activation.h"
#include "models/mixed_precision.h"

namespace cr {

LlamaMLPImpl::LlamaMLPImpl(const ModelSpec& spec, const TensorParallel& tp) : tp_(tp), dropout_(spec.dropout) {
  gate_proj = register_module("gate_proj", ColumnParallelLinear(spec.d_model, spec.d_ff, spec.bias, tp));
  up_proj = register_module("up_proj", ColumnParallelLinear(spec.d_model, spec.d_ff, spec.bias, tp));
  down_proj = register_module("down_proj", RowParallelLinear(spec.d_ff, spec.d_model, spec.bias, tp));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  const auto input = enter_tensor_region(x, tp_);
  auto y = down_proj(activate("silu", gate_proj->project(input)) * up_proj->project(input));
  return (is_training() && dropout_ > 0) ? torch::dropout(y, dropout_, true) : y;
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp) {
  self_attn = register_module("self_attn", SelfAttention(spec, layer, "o_proj", tp));
  mlp = register_module("mlp", LlamaMLP(spec, tp));
  input_layernorm = register_module("input_layernorm", Norm(spec, spec.d_model, tp));
  post_attention_layernorm = register_module("post_attention_layernorm", Norm(spec, spec.d_model, tp));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, KVCache* cache) {
  auto h = x + self_attn(input_layernorm(x), cache);
  return h + mlp(post_attention_layernorm(h));
}

LlamaImpl::LlamaImpl(const ModelSpec& spec, const TensorParallel& tp) : CausalLMImpl(spec, "llama", tp) {
  embed_tokens = register_module("embed_tokens", VocabParallelEmbedding(spec.vocab_size, spec.d_model, tp));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.n_layer; ++i) {
    blocks_.push_back(LlamaDecoderLayer(spec, i, tp));
    layers->push_back(blocks_.back());
  }
  norm = register_module("norm", Norm(spec, spec.d_model, tp));
  if (!spec.tied_embeddings) {
    lm_head = register_module("lm_head", VocabParallelEmbedding(spec.vocab_size, spec.d_model, tp));
  }
}

torch::Tensor LlamaImpl::embed(const torch::Tensor& tokens, const torch::Tensor& positions) {
  // No position embedding: the attention layers rotate by the positions their cache gives.
  position_ids(tokens, positions, spec_.max_seq_len);
  auto x = as_activation(embed_tokens(tokens));
  return (is_training() && spec_.dropout > 0) ? torch::dropout(x, spec_.dropout, true) : x;
}

torch::Tensor LlamaImpl::run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache) {
  for (int64_t i = first; i < last; ++i) x = blocks_[i]->forward(x, cache);
  return x;
}

}  // namespace cr
