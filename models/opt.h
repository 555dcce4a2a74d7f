// OPT: learned positions offset by 2, ReLU MLP, separate q/k/v/out projections with biases,
// output embedding tied to the token embedding. Pre-LayerNorm with a final LayerNorm, except
// opt-350m: post-LayerNorm blocks, no final LayerNorm, 512-wide token embeddings projected to
// and from d_model. Parameter names are Hugging Face's without the "model." prefix.
#pragma once

#include <torch/torch.h>

#include "models/attention.h"
#include "models/embedding.h"
#include "models/causal_lm.h"
#include "models/norm.h"

namespace cr {

class OPTDecoderLayerImpl : public torch::nn::Module {
 public:
  OPTDecoderLayerImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);

  SelfAttention self_attn{nullptr};
  Norm self_attn_layer_norm{nullptr};
  ColumnParallelLinear fc1{nullptr};
  RowParallelLinear fc2{nullptr};
  Norm final_layer_norm{nullptr};

 private:
  bool layer_norm_before_;
  std::string activation_;
  double dropout_;
};
TORCH_MODULE(OPTDecoderLayer);

// Hugging Face's OPTDecoder: everything but the (tied) output embedding.
class OPTDecoderImpl : public torch::nn::Module {
 public:
  OPTDecoderImpl(const ModelSpec& spec, const TensorParallel& tp);

  VocabParallelEmbedding embed_tokens{nullptr};
  Embedding embed_positions{nullptr};  // max_seq_len + 2 rows
  Linear project_in{nullptr};           // only when word_embed_proj_dim != d_model
  Linear project_out{nullptr};
  torch::nn::ModuleList layers{nullptr};
  Norm final_layer_norm{nullptr};  // only with layer_norm_before
  std::vector<OPTDecoderLayer> blocks;
};
TORCH_MODULE(OPTDecoder);

class OPTImpl : public CausalLMImpl {
 public:
  explicit OPTImpl(const ModelSpec& spec, const TensorParallel& tp = {});

  torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& positions = {}) override;
  torch::Tensor run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache = nullptr) override;
  torch::nn::ModuleList blocks() const override { return decoder->layers; }

  OPTDecoder decoder{nullptr};

 protected:
  torch::Tensor final_hidden(const torch::Tensor& x) override;
  VocabParallelEmbedding output_embedding() override { return decoder->embed_tokens; }
  std::vector<std::shared_ptr<torch::nn::Module>> final_modules() override;
};
TORCH_MODULE(OPT);

}  // namespace cr
