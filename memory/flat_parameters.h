// memory/: where parameters, gradients and optimizer states live and in which precision.
//
// FlatParameters moves every parameter of a module into one contiguous buffer, each parameter
// becoming a view of it, so that clipping, the optimizer, checkpoints and (later) sharding and
// communication work on a few large tensors instead of hundreds of small ones. Parameters with
// weight decay (matrices, embeddings) come first, the others (biases, norm gains) after.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace cr {

struct FlatEntry {
  std::string name;
  int64_t offset = 0;
  int64_t numel = 0;
  std::vector<int64_t> shape;
  bool decay = false;
};

class FlatParameters {
 public:
  // compute_dtype: fp32, or bf16 with an fp32 master copy that the optimizer updates.
  FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype);

  int64_t numel() const { return numel_; }
  int64_t decay_numel() const { return decay_numel_; }  // [0, decay_numel) gets weight decay
  const std::vector<FlatEntry>& entries() const { return entries_; }
  bool has_master_copy() const { return compute_dtype_ != torch::kFloat; }

  torch::Tensor& master() { return master_; }            // fp32 parameters
  torch::Tensor& master_grad() { return master_grad_; }  // fp32 gradient sum over micro-batches
  torch::Tensor& compute() { return compute_; }          // what the model computes with

  void zero_grad();
  // After a micro-batch's backward: folds low-precision gradients into the fp32 sum.
  void accumulate_micro_batch_grads();
  // After the optimizer step: refreshes the low-precision copy from the master weights.
  void publish_master();

  // A named view of one parameter inside a flat fp32 buffer of the same layout.
  torch::Tensor view_of(const torch::Tensor& flat, const FlatEntry& entry) const;

 private:
  torch::ScalarType compute_dtype_;
  int64_t numel_ = 0;
  int64_t decay_numel_ = 0;
  std::vector<FlatEntry> entries_;
  torch::Tensor master_, master_grad_, compute_, compute_grad_;
};

}  // namespace cr
