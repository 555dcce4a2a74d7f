// memory/: where parameters, gradients and optimizer states live and in which precision.
//
// FlatParameters moves every parameter of a module into one contiguous buffer, each parameter
// becoming a view of it, so that clipping, the optimizer, checkpoints, sharding and
// communication work on a few large tensors instead of hundreds of small ones. Parameters are
// laid out in reverse registration order, which is roughly the order backward produces their
// gradients: gradient buckets that are contiguous ranges of the buffer fill up one after another.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "memory/shard_layout.h"

namespace cr {

struct FlatEntry {
  std::string name;
  int64_t offset = 0;
  int64_t numel = 0;
  std::vector<int64_t> shape;
  bool decay = false;
  int64_t layer = -1;  // transformer layer the parameter belongs to; -1: embeddings, final norm, head
};

// The transformer layer a parameter belongs to, from its name ("h.3.", "layers.3."); -1 for the
// embeddings, final norm and head.
int64_t layer_of_parameter(const std::string& name);

// The flat layout of parameters given (name, shape) in registration order: reversed, which is
// roughly the order backward produces their gradients; matrices and embeddings decay.
std::vector<FlatEntry> flat_layout(const std::vector<std::pair<std::string, std::vector<int64_t>>>& registered);

// Communication buckets over a flat layout: contiguous ranges of at most bucket_bytes (of fp32),
// near-equal within each layer, never spanning two layers (so a layer's weights move in whole
// buckets); a parameter larger than a bucket, like a token embedding, spans several.
std::vector<BucketRange> make_buckets(const std::vector<FlatEntry>& entries, int64_t bucket_bytes);

class FlatParameters {
 public:
  // compute_dtype: fp32, or bf16 / fp16 with an fp32 master copy that the optimizer updates.
  FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype);

  int64_t numel() const { return numel_; }
  const std::vector<FlatEntry>& entries() const { return entries_; }
  // Maximal [begin, end) ranges of the buffer whose parameters all do (or all do not) get
  // weight decay: matrices and embeddings do, biases and norm gains do not.
  std::vector<std::pair<int64_t, int64_t>> decay_ranges(bool decay) const;
  bool has_master_copy() const { return compute_dtype_ != torch::kFloat; }

  torch::Tensor& master() { return master_; }            // fp32 parameters
  torch::Tensor& master_grad() { return master_grad_; }  // fp32 gradient sum over micro-batches
  torch::Tensor& compute() { return compute_; }          // what the model computes with

  void zero_grad();
  // After a micro-batch's backward: folds low-precision gradients into the fp32 sum.
  void accumulate_micro_batch_grads();
  // After the optimizer step: refreshes the low-precision copy from the master weights.
  void publish_master();

  // The module's parameter tensors, in the order of entries().
  const std::vector<torch::Tensor>& parameters_in_entry_order() const { return params_; }

  // A named view of one parameter inside a flat fp32 buffer of the same layout.
  torch::Tensor view_of(const torch::Tensor& flat, const FlatEntry& entry) const;

  std::vector<BucketRange> buckets(int64_t bucket_bytes) const { return make_buckets(entries_, bucket_bytes); }

 private:
  torch::ScalarType compute_dtype_;
  int64_t numel_ = 0;
  std::vector<FlatEntry> entries_;
  std::vector<torch::Tensor> params_;
  torch::Tensor master_, master_grad_, compute_, compute_grad_;
};

}  // namespace cr
