// GPT-2: learned positions, pre-LayerNorm blocks, GELU, tied input/output embeddings.
// The forward pass is split into embed / blocks / head so that a pipeline stage can run a
// contiguous slice of it.
#pragma once

#include <torch/torch.h>

#include "models/model_spec.h"
#include "models/transformer_layers.h"

namespace cr {

class GPT2Impl : public torch::nn::Module {
 public:
  explicit GPT2Impl(const ModelSpec& spec);

  // GPT-2's initialisation: N(0, 0.02) weights, residual projections scaled by
  // 1/sqrt(2 n_layer), zero biases, unit LayerNorm gains. Uses the global torch generator.
  void reset_parameters();

  torch::Tensor embed(const torch::Tensor& tokens);  // (B, T) int64 -> (B, T, C)
  torch::Tensor run_blocks(torch::Tensor x, int64_t first, int64_t last);  // blocks [first, last)
  torch::Tensor head_loss(const torch::Tensor& x, const torch::Tensor& targets);  // mean CE
  torch::Tensor head_logits(const torch::Tensor& x);

  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);
  torch::Tensor logits(const torch::Tensor& tokens);

  const ModelSpec& spec() const { return spec_; }

  torch::nn::Embedding wte{nullptr};
  torch::nn::Embedding wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};

 private:
  ModelSpec spec_;
  std::vector<TransformerBlock> blocks_;
};
TORCH_MODULE(GPT2);

}  // namespace cr
