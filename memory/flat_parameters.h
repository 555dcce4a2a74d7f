// memory/: where parameters, gradients and optimizer states live and in which precision.
//
// FlatParameters moves every parameter of a module into one contiguous buffer, each parameter
// becoming a view of it, so that loading, checkpoints, sharding and communication work on a few
// large tensors instead of hundreds of small ones. Parameters are laid out in reverse
// registration order, which is roughly the order backward produces their gradients: gradient
// buckets that are contiguous ranges of the buffer fill up one after another. Training hands the
// buffer to ZeroParameters (zero_parameters.h), which owns gradients and sharding. Weights come
// from a WeightSource (weight_source.h).
#pragma once

#include <functional>

#include <algorithm>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "memory/shard_layout.h"
#include "models/model_spec.h"
#include "models/parameter_slice.h"

namespace cr {

struct FlatEntry {
  std::string name;
  int64_t offset = 0;
  int64_t numel = 0;
  std::vector<int64_t> shape;  // this rank's part
  bool decay = false;
  int64_t layer = -1;  // transformer block the parameter belongs to; -1: embeddings, final norm, head
  ParameterSlice slice;  // where the part sits in the whole tensor (the whole of it without tensor parallelism)

  const std::vector<int64_t>& global_shape() const { return slice.global_shape; }
};

// The flat layout of parameters given in registration order (with the block each belongs to):
// reversed, which is roughly the order backward produces their gradients; matrices and
// embeddings decay.
std::vector<FlatEntry> flat_layout(const std::vector<ParameterShape>& registered);

// Communication buckets over a flat layout: contiguous ranges of at most bucket_bytes (of fp32),
// near-equal within each layer, never spanning two layers (so a layer's weights move in whole
// buckets); a parameter larger than a bucket, like a token embedding, spans several.
std::vector<BucketRange> make_buckets(const std::vector<FlatEntry>& entries, int64_t bucket_bytes);

// Calls fn(entry, begin, end) for each parameter overlapping flat [begin, begin + numel), with
// the overlap's flat bounds. Entries are in flat order.
template <typename Fn>
void for_each_overlap(const std::vector<FlatEntry>& entries, int64_t begin, int64_t numel, Fn fn) {
  if (numel <= 0) return;  // e.g. a rank's empty share of a bucket smaller than the rank count
  const int64_t end = begin + numel;
  auto it = std::upper_bound(entries.begin(), entries.end(), begin,
                             [](int64_t position, const FlatEntry& e) { return position < e.offset + e.numel; });
  for (; it != entries.end() && it->offset < end; ++it) {
    fn(*it, std::max(begin, it->offset), std::min(end, it->offset + it->numel));
  }
}

// A module's parameters in flat-layout order with their entries; holds no weights of its own.
struct ModuleParameters {
  std::vector<FlatEntry> entries;
  std::vector<torch::Tensor> tensors;  // the module's parameters, in the order of entries
  int64_t numel = 0;
  std::vector<BucketRange> buckets(int64_t bucket_bytes) const { return make_buckets(entries, bucket_bytes); }
};

// `blocks`: the model's transformer blocks (CausalLMImpl::blocks()), whose parameters form the
// layers of the layout; without them every parameter is outside any layer. `keep`: the
// parameters to include (a pipeline stage's); empty: all.
ModuleParameters module_parameters(torch::nn::Module& module,
                                   const torch::nn::ModuleList& blocks = torch::nn::ModuleList(nullptr),
                                   const std::function<bool(const torch::Tensor&)>& keep = {});

class WeightSource;

class FlatParameters {
 public:
  // compute_dtype: fp32, or bf16 / fp16 with an fp32 master copy that the optimizer updates.
  // The module's parameters keep their current values.
  FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype,
                 const torch::nn::ModuleList& blocks = torch::nn::ModuleList(nullptr));
  // The parameters of `params` (a skeleton's: build_model_skeleton) get their values from `source`,
  // on `device`.
  FlatParameters(ModuleParameters params, const WeightSource& source, torch::ScalarType compute_dtype,
                 torch::Device device);

  int64_t numel() const { return layout_.numel; }
  const std::vector<FlatEntry>& entries() const { return layout_.entries; }
  bool has_master_copy() const { return compute_dtype_ != torch::kFloat; }

  torch::Tensor& master() { return master_; }    // fp32 parameters
  torch::Tensor& compute() { return compute_; }  // what the model computes with

  // Replaces the weights with `source`'s.
  void load(const WeightSource& source);

  // The module's parameter tensors, in the order of entries().
  const std::vector<torch::Tensor>& parameters_in_entry_order() const { return layout_.tensors; }

  // A named view of one parameter inside a flat fp32 buffer of the same layout.
  torch::Tensor view_of(const torch::Tensor& flat, const FlatEntry& entry) const;

  std::vector<BucketRange> buckets(int64_t bucket_bytes) const { return layout_.buckets(bucket_bytes); }

 private:
  torch::ScalarType compute_dtype_;
  ModuleParameters layout_;
  torch::Tensor master_, compute_;
};

}  // namespace cr
