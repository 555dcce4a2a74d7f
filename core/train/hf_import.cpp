#include "core/train/hf_import.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/ranges.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"
#include "core/formats/hf_weights.h"
#include "core/train/train_checkpoint.h"

namespace fs = std::filesystem;

namespace cr {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// The directory's weight files, once its config.json matches the model.
HfWeightReader checked_reader(const std::string& dir, const ModelSpec& spec) {
  check_hf_spec_matches(read_hf_config(dir), spec, (fs::path(dir) / "config.json").string());
  return HfWeightReader(dir);
}

}  // namespace

std::unique_ptr<WeightSource> open_init_weights(const std::string& dir, const std::vector<FlatEntry>& entries,
                                                const ModelSpec& spec) {
  if (fs::exists(fs::path(dir) / "manifest.json")) return std::make_unique<CheckpointWeights>(dir, entries);
  if (fs::exists(fs::path(dir) / "config.json")) return std::make_unique<HfWeights>(dir, entries, spec);
  fail("model.init_from: {} has neither manifest.json (a colossal-run checkpoint) nor config.json "
       "(a Hugging Face model directory)", dir);
}

HfWeights::HfWeights(const std::string& dir, const std::vector<FlatEntry>& entries, const ModelSpec& spec)
    : reader_(checked_reader(dir, spec)) {
  for (const auto& entry : entries) {
    const HfTensorName hf = hf_tensor_name(spec.arch, entry.name);
    // Files saved from the base model alone (GPT-2 on the hub) lack the base prefix.
    const std::string& name = reader_.contains(hf.name) ? hf.name : hf.unprefixed;
    if (!reader_.contains(name)) {
      fail("{}: no tensor '{}' for parameter '{}' in the model's safetensors files", dir, hf.name, entry.name);
    }
    const TensorView& view = reader_.get(name);
    std::vector<int64_t> expected = entry.global_shape();
    if (hf.transposed) std::reverse(expected.begin(), expected.end());
    if (view.shape != expected) {
      fail("{}: tensor '{}' has shape {} but parameter '{}' needs {}{}", reader_.file_of(name), name,
           shape_string(view.shape), entry.name, shape_string(expected),
           hf.transposed ? " (a Conv1D weight, stored [in, out])" : "");
    }
    stored_[entry.name] = {name, hf.transposed};
  }
}

void HfWeights::read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const {
  const Stored& stored = stored_.at(entry.name);
  const TensorView& view = reader_.get(stored.name);
  if (!stored.transposed) {
    read_float_range(view, reader_.file_of(stored.name), begin, count, out);
  } else {
    if (transposed_name_ != entry.name) {
      transposed_ = to_float_tensor(view, reader_.file_of(stored.name)).t().contiguous();
      transposed_name_ = entry.name;
    }
    std::copy_n(transposed_.data_ptr<float>() + begin, count, out);
  }
  // Refused here, naming the tensor, rather than as a diverged loss at the first step.
  const float* bad = std::find_if(out, out + count, [](float v) { return !std::isfinite(v); });
  if (bad != out + count) {
    fail("{}: tensor '{}' holds {} at element {}", reader_.file_of(stored.name), stored.name, *bad,
         begin + (bad - out));
  }
}

}  // namespace cr
