#include "core/formats/hf_weights.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/base/strings.h"
#include "core/base/json.h"

namespace fs = std::filesystem;

namespace cr {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kLmHead = "lm_head.weight";

// transformers' base_model_prefix of each *ForCausalLM / *LMHeadModel class.
std::string base_prefix(const std::string& arch) {
  if (arch == "gpt2") return "transformer.";
  if (arch == "opt" || arch == "llama") return "model.";
  fail("model.arch '{}' has no Hugging Face weight names", arch);
}

bool gpt2_conv1d(const std::string& our_name) {
  if (!starts_with(our_name, "h.")) return false;
  for (const char* suffix : {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}) {
    if (ends_with(our_name, suffix)) return true;
  }
  return false;
}

torch::ScalarType torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return torch::kFloat;
    case DType::F16: return torch::kHalf;
    case DType::BF16: return torch::kBFloat16;
    default: return torch::kFloat;
  }
}

nlohmann::json read_json(const std::string& path) { return read_json_file(path); }

// Whether anything is at `path`, a dangling or looping link included (which then fails to open,
// naming itself), without throwing.
bool present(const fs::path& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

}  // namespace

HfTensorName hf_tensor_name(const std::string& arch, const std::string& our_name) {
  const std::string prefix = base_prefix(arch);
  if (our_name == kLmHead) return {our_name, our_name, false};
  return {prefix + our_name, our_name, arch == "gpt2" && gpt2_conv1d(our_name)};
}

std::string our_tensor_name(const std::string& arch, const std::string& hf_name) {
  const std::string prefix = base_prefix(arch);
  if (starts_with(hf_name, prefix)) return hf_name.substr(prefix.size());
  return hf_name;
}

HfWeightReader::HfWeightReader(const std::string& dir) : dir_(dir) {
  const fs::path root(dir);
  auto add_file = [this](const std::string& path) {
    files_.emplace_back(path);
    for (const auto& name : files_.back().names()) where_[name] = files_.size() - 1;
  };
  if (present(root / kIndexFile)) {
    const std::string index_path = (root / kIndexFile).string();
    const auto index = read_json(index_path);
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      fail("{}: no \"weight_map\" object", index_path);
    }
    std::map<std::string, size_t> opened;  // shard file -> index in files_
    for (const auto& [name, file] : index["weight_map"].items()) {
      // A bare file name: an index must not reach outside the model directory.
      if (!file.is_string() || file.get<std::string>().empty() ||
          fs::path(file.get<std::string>()).filename() != fs::path(file.get<std::string>())) {
        fail("{}: tensor '{}' maps to {}, which is not a file name in the model directory", index_path, name,
             shortened(file.dump()));
      }
      const std::string shard = file.get<std::string>();
      if (!opened.count(shard)) {
        add_file((root / shard).string());
        opened[shard] = files_.size() - 1;
      }
      if (!files_[opened[shard]].contains(name)) {
        fail("{}: lists tensor '{}' in {}, which does not contain it", index_path, name, shard);
      }
      where_[name] = opened[shard];
    }
  } else if (present(root / kSingleFile)) {
    add_file((root / kSingleFile).string());
  } else if (present(root / "pytorch_model.bin") || present(root / "pytorch_model.bin.index.json")) {
    fail("{}: has only pytorch_model.bin weights; save them as safetensors first "
         "(transformers: model.save_pretrained(dir, safe_serialization=True))", dir);
  } else {
    fail("{}: has neither {} nor {}", dir, kSingleFile, kIndexFile);
  }
}

const TensorView& HfWeightReader::get(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail("{}: no tensor '{}' in the model's safetensors files", dir_, name);
  return files_[it->second].get(name);
}

std::string HfWeightReader::file_of(const std::string& name) const {
  const auto it = where_.find(name);
  return it == where_.end() ? dir_ : files_[it->second].path();
}

std::vector<std::string> HfWeightReader::names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

torch::Tensor to_float_tensor(const TensorView& view, const std::string& where) {
  auto out = torch::empty(view.shape, torch::kFloat);
  read_float_range(view, where, 0, out.numel(), out.data_ptr<float>());
  return out;
}

void read_float_range(const TensorView& view, const std::string& where, int64_t begin, int64_t count, float* out) {
  if (view.dtype != DType::F32 && view.dtype != DType::F16 && view.dtype != DType::BF16) {
    fail("{}: tensor '{}' is {}; only F32, F16 and BF16 weights can be loaded", where, view.name,
         dtype_name(view.dtype));
  }
  const auto stored = torch::empty({count}, torch_dtype(view.dtype));
  const size_t element = stored.element_size();
  CR_CHECK(begin >= 0 && static_cast<size_t>(begin + count) * element <= view.nbytes, "{}: '{}' range out of bounds",
           where, view.name);
  // The mapped data is only as aligned as the tensors before it allow: copy, then convert.
  std::memcpy(stored.data_ptr(), static_cast<const char*>(view.data) + begin * element, count * element);
  torch::from_blob(out, {count}, torch::kFloat).copy_(stored);
}

std::vector<std::string> write_hf_safetensors(const std::string& dir, const std::vector<TensorView>& tensors,
                                              int64_t max_shard_bytes) {
  if (max_shard_bytes < 1) fail("shard size limit must be positive, got {}", max_shard_bytes);
  // Greedy packing in the given order, as transformers' save_pretrained does.
  std::vector<std::vector<TensorView>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& tensor : tensors) {
    const auto bytes = static_cast<int64_t>(tensor.nbytes);
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(tensor);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  fs::create_directories(dir);
  // transformers refuses safetensors files whose metadata lacks format "pt".
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (shards.size() == 1) {
    const std::string path = (fs::path(dir) / kSingleFile).string();
    write_safetensors(path, shards[0], metadata);
    return {path};
  }
  std::vector<std::string> written;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    written.push_back((fs::path(dir) / file).string());
    write_safetensors(written.back(), shards[i], metadata);
    for (const auto& tensor : shards[i]) weight_map[tensor.name] = file;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  const std::string index_path = (fs::path(dir) / kIndexFile).string();
  std::ofstream out(index_path);
  out << index.dump(2) << "\n";
  if (!out.flush()) fail("{}: cannot write", index_path);
  written.push_back(index_path);
  return written;
}

}  // namespace cr
