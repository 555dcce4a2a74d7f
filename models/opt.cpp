#include "models/opt.h"

#include "models/activation.h"
#include "models/mixed_precision.h"

namespace cr {
namespace {

// OPT's learned positions start at 2 (rows 0 and 1 were reserved for padding in fairseq).
constexpr int64_t kPositionOffset = 2;

}  // namespace

OPTDecoderLayerImpl::OPTDecoderLayerImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp)
    : layer_norm_before_(spec.layer_norm_before), activation_(spec.activation), dropout_(spec.dropout) {
  self_attn = register_module("self_attn", SelfAttention(spec, layer, "out_proj", tp));
  self_attn_layer_norm = register_module("self_attn_layer_norm", Norm(spec, spec.d_model, tp));
  fc1 = register_module("fc1", ColumnParallelLinear(spec.d_model, spec.d_ff, spec.bias, tp));
  fc2 = register_module("fc2", RowParallelLinear(spec.d_ff, spec.d_model, spec.bias, tp));
  final_layer_norm = register_module("final_layer_norm", Norm(spec, spec.d_model, tp));
}

torch::Tensor OPTDecoderLayerImpl::forward(const torch::Tensor& x, KVCache* cache) {
  auto pre = [&](Norm& norm, const torch::Tensor& t) { return layer_norm_before_ ? norm(t) : t; };
  auto post = [&](Norm& norm, const torch::Tensor& t) { return layer_norm_before_ ? t : norm(t); };
  auto h = post(self_attn_layer_norm, x + self_attn(pre(self_attn_layer_norm, x), cache));
  auto y = fc2(activate(activation_, fc1(pre(final_layer_norm, h))));
  if (is_training() && dropout_ > 0) y = torch::dropout(y, dropout_, true);
  return post(final_layer_norm, h + y);
}

OPTDecoderImpl::OPTDecoderImpl(const ModelSpec& spec, const TensorParallel& tp) {
  const int64_t e = embedding_dim(spec);
  embed_tokens = register_module("embed_tokens", VocabParallelEmbedding(spec.vocab_size, e, tp));
  embed_positions =
      register_module("embed_positions", Embedding(spec.max_seq_len + kPositionOffset, spec.d_model, tp.grid.get()));
  sum_partial_gradient(embed_positions->weight, tp);
  if (e != spec.d_model) {
    project_out = register_module("project_out", Linear(spec.d_model, e, false));
    project_in = register_module("project_in", Linear(e, spec.d_model, false));
    // Whole on every tensor rank, applied to its part of the sequence under split_gather.
    sum_partial_gradient(project_out->weight, tp);
    sum_partial_gradient(project_in->weight, tp);
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.n_layer; ++i) {
    blocks.push_back(OPTDecoderLayer(spec, i, tp));
    layers->push_back(blocks.back());
  }
  if (spec.layer_norm_before) {
    final_layer_norm = register_module("final_layer_norm", Norm(spec, spec.d_model, tp));
  }
}

OPTImpl::OPTImpl(const ModelSpec& spec, const TensorParallel& tp) : CausalLMImpl(spec, "opt", tp) {
  decoder = register_module("decoder", OPTDecoder(spec, tp));
}

torch::Tensor OPTImpl::embed(const torch::Tensor& tokens, const torch::Tensor& token_positions) {
  auto positions = local_sequence(position_ids(tokens, token_positions, spec_.max_seq_len) + kPositionOffset, tp_, 0);
  auto x = as_activation(decoder->embed_tokens(tokens));
  if (decoder->project_in) x = decoder->project_in(x);
  x = x + cast_to_activation(decoder->embed_positions(positions), x);
  return (is_training() && spec_.dropout > 0) ? torch::dropout(x, spec_.dropout, true) : x;
}

torch::Tensor OPTImpl::run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache) {
  for (int64_t i = first; i < last; ++i) x = decoder->blocks[i]->forward(x, cache);
  return x;
}

torch::Tensor OPTImpl::final_hidden(const torch::Tensor& x) {
  auto h = decoder->final_layer_norm ? decoder->final_layer_norm(x) : x;
  return decoder->project_out ? decoder->project_out(h) : h;
}

std::vector<std::shared_ptr<torch::nn::Module>> OPTImpl::final_modules() {
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  if (decoder->final_layer_norm) out.push_back(decoder->final_layer_norm.ptr());
  if (decoder->project_out) out.push_back(decoder->project_out.ptr());
  return out;
}

}  // namespace cr
