// Transformer building blocks shared by the model zoo: causal self-attention, the MLP and the
// pre-LayerNorm block. Parameter names follow Hugging Face GPT-2 (c_attn, c_proj, c_fc, ln_1)
// so that weight maps stay one-to-one.
#pragma once

#include <torch/torch.h>

#include "models/model_spec.h"

namespace cr {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelSpec& spec);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear c_attn{nullptr};  // fused q, k, v projection
  torch::nn::Linear c_proj{nullptr};

 private:
  int64_t n_head_;
  int64_t head_dim_;
  double dropout_;
  torch::Tensor causal_bias_;  // 0 on and below the diagonal, -inf above
};
TORCH_MODULE(CausalSelfAttention);

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelSpec& spec);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear c_fc{nullptr};
  torch::nn::Linear c_proj{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(MLP);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const ModelSpec& spec);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm ln_1{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(TransformerBlock);

}  // namespace cr
