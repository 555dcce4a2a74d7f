// GPT-2's blocks: fused-projection causal self-attention, the MLP and the pre-LayerNorm block.
// Parameter names follow Hugging Face GPT-2 (c_attn, c_proj, c_fc, ln_1) so that weight maps
// stay one-to-one. The attention core and the norms are the zoo's shared ones.
#pragma once

#include <torch/torch.h>

#include "models/kv_cache.h"
#include "models/linear.h"
#include "models/model_spec.h"
#include "models/norm.h"
#include "models/tensor_parallel.h"

namespace cr {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);

  ColumnParallelLinear c_attn{nullptr};  // fused q, k, v projection
  RowParallelLinear c_proj{nullptr};

 private:
  TensorParallel tp_;
  int64_t layer_;
  int64_t n_head_;  // this rank's heads
  int64_t head_dim_;
  double dropout_;
};
TORCH_MODULE(CausalSelfAttention);

class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(const ModelSpec& spec, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x);

  ColumnParallelLinear c_fc{nullptr};
  RowParallelLinear c_proj{nullptr};

 private:
  std::string activation_;
  double dropout_;
};
TORCH_MODULE(MLP);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const ModelSpec& spec, int64_t layer, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);

  Norm ln_1{nullptr};
  CausalSelfAttention attn{nullptr};
  Norm ln_2{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(TransformerBlock);

}  // namespace cr
