// GPT-2: learned positions, pre-LayerNorm blocks, GELU, tied input/output embeddings.
// Parameter names are Hugging Face's without the "transformer." prefix.
#pragma once

#include <torch/torch.h>

#include "models/causal_lm.h"
#include "models/embedding.h"
#include "models/norm.h"
#include "models/transformer_layers.h"

namespace cr {

class GPT2Impl : public CausalLMImpl {
 public:
  explicit GPT2Impl(const ModelSpec& spec, const TensorParallel& tp = {});

  torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& positions = {}) override;
  torch::Tensor run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache = nullptr) override;
  torch::nn::ModuleList blocks() const override { return h; }

  VocabParallelEmbedding wte{nullptr};
  Embedding wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  Norm ln_f{nullptr};

 protected:
  torch::Tensor final_hidden(const torch::Tensor& x) override { return ln_f(x); }
  VocabParallelEmbedding output_embedding() override { return wte; }
  std::vector<std::shared_ptr<torch::nn::Module>> final_modules() override { return {ln_f.ptr()}; }

 private:
  std::vector<TransformerBlock> blocks_;
};
TORCH_MODULE(GPT2);

}  // namespace cr
