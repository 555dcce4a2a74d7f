#include "core/train/hf_import.h"

#include <algorithm>
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

}  // namespace

void load_init_weights(const std::string& dir, FlatParameters& params, const ModelSpec& spec) {
  if (fs::exists(fs::path(dir) / "manifest.json")) {
    load_checkpoint_weights(dir, params);
  } else if (fs::exists(fs::path(dir) / "config.json")) {
    load_hf_weights(dir, params, spec);
  } else {
    fail("model.init_from: {} has neither manifest.json (a colossal-run checkpoint) nor config.json "
         "(a Hugging Face model directory)", dir);
  }
}

void load_hf_weights(const std::string& dir, FlatParameters& params, const ModelSpec& spec) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  check_hf_spec_matches(read_hf_config(dir), spec, config_path);
  const HfWeightReader reader(dir);
  auto host = torch::empty({params.numel()}, torch::kFloat);
  for (const auto& entry : params.entries()) {
    const HfTensorName hf = hf_tensor_name(spec.arch, entry.name);
    // Files saved from the base model alone (GPT-2 on the hub) lack the base prefix.
    const std::string& name = reader.contains(hf.name) ? hf.name : hf.unprefixed;
    if (!reader.contains(name)) {
      fail("{}: no tensor '{}' for parameter '{}' in the model's safetensors files", dir, hf.name, entry.name);
    }
    const TensorView& view = reader.get(name);
    std::vector<int64_t> expected = entry.shape;
    if (hf.transposed) std::reverse(expected.begin(), expected.end());
    if (view.shape != expected) {
      fail("{}: tensor '{}' has shape {} but parameter '{}' needs {}{}", reader.file_of(name), name,
           shape_string(view.shape), entry.name, shape_string(expected),
           hf.transposed ? " (a Conv1D weight, stored [in, out])" : "");
    }
    auto value = to_float_tensor(view, reader.file_of(name));
    if (hf.transposed) value = value.t();
    host.narrow(0, entry.offset, entry.numel).view(entry.shape).copy_(value);
  }
  torch::NoGradGuard no_grad;
  params.master().copy_(host);
  params.publish_master();
}

}  // namespace cr
