// The interface every architecture of the zoo implements, so that training, Hugging Face
// import/export and generation work with any of them. The forward pass is split into
// embed / blocks / head so that a pipeline stage can run a contiguous slice of it.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "models/kv_cache.h"
#include "models/model_spec.h"
#include "models/tensor_parallel.h"

namespace cr {

class CausalLMImpl : public torch::nn::Module {
 public:
  // Validates the spec, which must be of `arch`. `tp`: the tensor group the layers split over.
  CausalLMImpl(const ModelSpec& spec, const std::string& arch, const TensorParallel& tp);

  const ModelSpec& spec() const { return spec_; }
  const TensorParallel& tensor_parallel() const { return tp_; }

  // The transformer blocks in order: the parameter groups that ZeRO-3 gathers one at a time and
  // that pipeline stages divide between them.
  virtual torch::nn::ModuleList blocks() const = 0;

  // (B, T) int64 tokens at `positions`, (T) int64 (undefined: 0, 1, ...) -> (B, T, d_model)
  // (B, T / tensor size, d_model) under sequence parallelism.
  virtual torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& positions = {}) = 0;
  // Blocks [first, last); with a cache, each block's attention runs through it.
  virtual torch::Tensor run_blocks(torch::Tensor x, int64_t first, int64_t last, KVCache* cache = nullptr) = 0;
  // Mean cross-entropy against (B, T) targets, the head fused with the loss (split over the
  // vocabulary under tensor parallelism).
  torch::Tensor head_loss(const torch::Tensor& x, const torch::Tensor& targets);
  torch::Tensor head_logits(const torch::Tensor& x);

  // Pipeline stages: the parameters the LM head uses (final_hidden's and the output embedding),
  // and the output embedding's weight, which is also the input's when tied_embeddings.
  std::vector<torch::Tensor> head_parameters();
  torch::Tensor output_embedding_weight() { return output_embedding()->weight; }

  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);
  torch::Tensor logits(const torch::Tensor& tokens);  // (B, T, vocab)
  // Incremental decoding: logits for `tokens` (B, T_new) at the positions the cache gives them;
  // their keys and values join the cache.
  torch::Tensor forward_cached(const torch::Tensor& tokens, KVCache& cache);

 protected:
  // The hidden state the output embedding reads (final norm, OPT's project_out) and that
  // embedding, (vocab, embedding_dim), this rank's rows of it.
  virtual torch::Tensor final_hidden(const torch::Tensor& x) = 0;
  virtual VocabParallelEmbedding output_embedding() = 0;
  // The modules final_hidden runs.
  virtual std::vector<std::shared_ptr<torch::nn::Module>> final_modules() = 0;

  ModelSpec spec_;
  TensorParallel tp_;
};
using CausalLM = std::shared_ptr<CausalLMImpl>;

// The (T) positions of the (B, T) tokens: `positions`, or 0, 1, ... when undefined; cr::Error
// when one passes max_seq_len.
torch::Tensor position_ids(const torch::Tensor& tokens, const torch::Tensor& positions, int64_t max_seq_len);

// The architecture named by spec.arch with its initial weights for `seed` (parameter_init.h):
// the whole model, or this rank's slices of it under tensor parallelism.
CausalLM build_model(const ModelSpec& spec, uint64_t seed = 0, const TensorParallel& tp = {});
// The same model with parameters of the right shapes and names but no storage: whoever owns the
// weights (a ParameterStrategy, FlatParameters) gives them storage and values.
CausalLM build_model_skeleton(const ModelSpec& spec, const TensorParallel& tp = {});

}  // namespace cr
