// LLaMA: RMSNorm, rotary positions (Hugging Face's rotate-half convention), SwiGLU MLP without
// biases, grouped-query attention, an output embedding (lm_head) of its own. Parameter names are
// Hugging Face's without the "model." prefix (lm_head keeps its name).
#pragma once

#include <torch/torch.h>

#include "models/attention.h"
#include "models/embedding.h"
#include "models/causal_lm.h"
#include "models/norm.h"

namespace cr {

// down_proj(silu(gate_proj(x)) * up_proj(x)).
class LlamaMLPImpl : public torch::nn::Module {
 public:
  LlamaMLPImpl(const ModelSpec& spec, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x);

  ColumnParallelLinear gate_proj{nullptr};
  ColumnParallelLinear up_proj{nullptr};
  RowParallelLinear down_proj{nullptr};

 private:
  TensorParallel tp_;
  double dropout_;
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);

  SelfAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  Norm input_layernorm{nullptr};
  Norm post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

class LlamaImpl : public CausalLMImpl {
 public:
  explicit LlamaImpl(const ModelSpec& spec, const TensorParallel& tp = {});

  torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& positions = {}) override;
  torch::Tensor run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache = nullptr) override;
  torch::nn::ModuleList blocks() const override { return layers; }

  VocabParallelEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  Norm norm{nullptr};
  // The output embedding (vocab, d_model), rows split like the input one's; absent with tied_embeddings.
  VocabParallelEmbedding lm_head{nullptr};

 protected:
  torch::Tensor final_hidden(const torch::Tensor& x) override { return norm(x); }
  VocabParallelEmbedding output_embedding() override { return lm_head ? lm_head : embed_tokens; }
  std::vector<std::shared_ptr<torch::nn::Module>> final_modules() override { return {norm.ptr()}; }

 private:
  std::vector<LlamaDecoderLayer> blocks_;
};
TORCH_MODULE(Llama);

}  // namespace cr
