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
  explicit LlamaMLPImpl(const ModelSpec& spec);
  torch::Tensor forward(const torch::Tensor& x);

  Linear gate_proj{nullptr};
  Linear up_proj{nullptr};
  Linear down_proj{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const ModelSpec& spec, int64_t layer);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);

  SelfAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  Norm input_layernorm{nullptr};
  Norm post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

class LlamaImpl : public CausalLMImpl {
 public:
  explicit LlamaImpl(const ModelSpec& spec);

  torch::Tensor embed(const torch::Tensor& tokens, int64_t first_position = 0) override;
  torch::Tensor run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache = nullptr) override;
  torch::nn::ModuleList blocks() const override { return layers; }

  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  Norm norm{nullptr};
  Linear lm_head{nullptr};  // absent with tied_embeddings

 protected:
  torch::Tensor final_hidden(const torch::Tensor& x) override { return norm(x); }
  torch::Tensor output_embedding() override { return lm_head ? lm_head->weight : embed_tokens->weight; }

 private:
  std::vector<LlamaDecoderLayer> blocks_;
};
TORCH_MODULE(Llama);

}  // namespace cr
