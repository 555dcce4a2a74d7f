// Hugging Face weight files: parameter names and layouts, reading model.safetensors or the
// shards listed in model.safetensors.index.json, and writing either.
//
// Our parameter names are transformers' names inside the base model, so a name maps by
// adding the base model's prefix ("transformer." for GPT-2, "model." for OPT and LLaMA);
// the LM head lives outside the base model and keeps its name. GPT-2's fused attention and
// MLP matrices are transformers Conv1D weights, stored [in, out]: the transpose of a
// torch Linear's [out, in].
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/formats/safetensors.h"

namespace cr {

struct HfTensorName {
  std::string name;         // in the file written by transformers' save_pretrained
  std::string unprefixed;   // the same tensor saved from the base model alone (older hub files)
  bool transposed = false;  // stored as the transpose of our parameter
};

HfTensorName hf_tensor_name(const std::string& arch, const std::string& our_name);

// The inverse of hf_tensor_name (either spelling); cr::Error for a name with no counterpart.
std::string our_tensor_name(const std::string& arch, const std::string& hf_name);

// The weights of a Hugging Face model directory: dir/model.safetensors, or the shards named
// by dir/model.safetensors.index.json. Errors name the directory, the file and the tensor.
class HfWeightReader {
 public:
  explicit HfWeightReader(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const TensorView& get(const std::string& name) const;
  std::string file_of(const std::string& name) const;  // the file holding it, for messages
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index in files_
};

// An F32, F16 or BF16 tensor as a new fp32 CPU tensor; cr::Error naming `where` otherwise.
torch::Tensor to_float_tensor(const TensorView& view, const std::string& where);
// Elements [begin, begin + count) of its row-major flattening, as fp32, into `out`.
void read_float_range(const TensorView& view, const std::string& where, int64_t begin, int64_t count, float* out);

// transformers' default shard limit for save_pretrained.
constexpr int64_t kDefaultMaxShardBytes = 5'000'000'000;

// Writes `tensors` (in order) as dir/model.safetensors, or, when they total more than
// max_shard_bytes, as model-0000i-of-0000n.safetensors shards with model.safetensors.index.json.
// A tensor larger than the limit gets a shard of its own. Returns the files written.
std::vector<std::string> write_hf_safetensors(const std::string& dir, const std::vector<TensorView>& tensors,
                                              int64_t max_shard_bytes = kDefaultMaxShardBytes);

}  // namespace cr
