// Starting a run from existing weights (model.init_from): a colossal-run checkpoint
// directory (it has manifest.json) or a Hugging Face model directory (it has config.json).
// Both are WeightSources, so each rank reads only the part of every tensor it keeps.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/formats/hf_weights.h"
#include "memory/weight_source.h"
#include "models/model_spec.h"

namespace cr {

// The weights in `dir` for the parameters `entries` of `spec`'s model; only weights, no
// optimizer state. Names and shapes are checked on opening.
std::unique_ptr<WeightSource> open_init_weights(const std::string& dir, const std::vector<FlatEntry>& entries,
                                                const ModelSpec& spec);

// The Hugging Face case: checks dir/config.json against `spec` (naming the dimension that
// differs) and finds every parameter's tensor, checking its shape; reading converts F16/BF16 to
// fp32 and Conv1D layouts to ours. Tensors the model does not have (attention-mask buffers, a
// tied LM head) are ignored.
class HfWeights final : public WeightSource {
 public:
  HfWeights(const std::string& dir, const std::vector<FlatEntry>& entries, const ModelSpec& spec);
  void read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const override;

 private:
  struct Stored {
    std::string name;  // in the files
    bool transposed;
  };
  HfWeightReader reader_;
  std::map<std::string, Stored> stored_;  // by our parameter name
  // The last transposed tensor read, whole in our layout: a Conv1D weight is read in pieces.
  mutable std::string transposed_name_;
  mutable torch::Tensor transposed_;
};

}  // namespace cr
