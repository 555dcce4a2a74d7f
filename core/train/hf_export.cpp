#include "core/train/hf_export.h"

#include <filesystem>
#include <fstream>
#include <set>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_store.h"
#include "core/config/config.h"
#include "core/base/error.h"
#include "core/base/strings.h"
#include "core/formats/hf_config.h"
#include "core/train/model_factory.h"
#include "core/train/train_checkpoint.h"

namespace fs = std::filesystem;

namespace cr {
namespace {

const char* hf_torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: fail("export: dtype {} is not a weight dtype (F32, BF16 or F16)", dtype_name(dtype));
  }
}

torch::ScalarType scalar_type(DType dtype) {
  return dtype == DType::BF16 ? torch::kBFloat16 : dtype == DType::F16 ? torch::kHalf : torch::kFloat;
}

void write_json(const std::string& path, const nlohmann::json& value) {
  std::ofstream out(path);
  out << value.dump(2) << "\n";
  if (!out.flush()) fail("{}: cannot write", path);
}

bool is_weights_file(const std::string& name) {
  return (starts_with(name, "model") && ends_with(name, ".safetensors")) || name == "model.safetensors.index.json";
}

void remove_earlier_weights(const fs::path& out_dir) {
  if (!fs::is_directory(out_dir)) return;
  for (const auto& item : fs::directory_iterator(out_dir)) {
    if (is_weights_file(item.path().filename().string())) fs::remove(item.path());
  }
}

// An export written into a sibling directory, then put in place of the target in one step.
class StagedDirectory {
 public:
  explicit StagedDirectory(const std::string& target)
      : target_(fs::absolute(target).lexically_normal()),
        path_(target_.parent_path() / (".tmp-" + target_.filename().string() + "-" + std::to_string(::getpid()))) {
    if (target_.filename().empty()) fail("export --out {}: names no directory", target);
    std::error_code ec;
    if (fs::exists(target_, ec) && !fs::is_directory(target_, ec)) {
      fail("export --out {}: exists and is not a directory", target);
    }
    fs::remove_all(path_, ec);
    fs::create_directories(path_, ec);
    if (ec) fail("export --out {}: cannot create {}: {}", target, path_.string(), ec.message());
  }
  ~StagedDirectory() {
    std::error_code ec;
    if (!committed_) fs::remove_all(path_, ec);
  }
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  std::string path() const { return path_.string(); }

  // Files the user keeps beside an earlier export (a README, a tokenizer not exported again) move
  // over; its weights do not, since a new export may shard them differently.
  void keep_other_files() const {
    std::error_code ec;
    if (!fs::is_directory(target_, ec)) return;
    for (const auto& item : fs::directory_iterator(target_)) {
      const std::string name = item.path().filename().string();
      if (is_weights_file(name) || fs::exists(path_ / name)) continue;
      fs::copy(item.path(), path_ / name, fs::copy_options::recursive, ec);
      if (ec) fail("export --out {}: cannot carry over {}: {}", target_.string(), name, ec.message());
    }
  }

  void commit() {
    replace_directory(path_.string(), target_.string());
    committed_ = true;
  }

 private:
  fs::path target_, path_;
  bool committed_ = false;
};

// A checkpoint directory given directly, or the newest one under a checkpoint root.
std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(fs::path(path) / "manifest.json")) return path;
  if (const auto latest = latest_checkpoint(path)) return *latest;
  fail("export: {} is neither a checkpoint directory (with manifest.json) nor a directory of checkpoints", path);
}

}  // namespace

std::vector<std::string> write_hf_model(const std::string& out_dir, const ModelSpec& spec,
                                        const std::vector<TensorView>& ours, DType dtype, int64_t max_shard_bytes) {
  const char* torch_dtype = hf_torch_dtype(dtype);
  std::vector<torch::Tensor> converted;  // keeps the bytes the views below point to
  std::vector<TensorView> views;
  for (const auto& tensor : ours) {
    const HfTensorName hf = hf_tensor_name(spec.arch, tensor.name);
    auto value = to_float_tensor(tensor, "export");
    if (hf.transposed) value = value.t();
    converted.push_back(value.to(scalar_type(dtype)).contiguous());
    const auto& c = converted.back();
    views.push_back({hf.name, dtype, c.sizes().vec(), c.data_ptr(), static_cast<size_t>(c.nbytes())});
  }
  remove_earlier_weights(out_dir);
  auto files = write_hf_safetensors(out_dir, views, max_shard_bytes);
  const std::string config_path = (fs::path(out_dir) / "config.json").string();
  write_json(config_path, hf_config_from_spec(spec, torch_dtype));
  files.push_back(config_path);
  const auto token_ids = hf_special_token_ids(spec);
  if (!token_ids.empty()) {
    nlohmann::json generation = {{"_from_model_config", true}};
    generation.update(token_ids);
    const std::string path = (fs::path(out_dir) / "generation_config.json").string();
    write_json(path, generation);
    files.push_back(path);
  }
  return files;
}

std::vector<std::string> copy_tokenizer_files(const std::string& dir, const std::string& out_dir) {
  // A SentencePiece model named as the file itself, as prepare and data.tokenizer_dir take it.
  if (fs::is_regular_file(dir)) {
    const fs::path target = fs::path(out_dir) / "tokenizer.model";
    fs::copy_file(dir, target, fs::copy_options::overwrite_existing);
    return {target.string()};
  }
  // source name -> name transformers looks for; for one target the first present source wins
  // (transformers' own names before OpenAI's and the shared data's copies of the same content).
  const std::pair<const char*, const char*> known[] = {
      {"tokenizer.json", "tokenizer.json"},
      {"tokenizer_config.json", "tokenizer_config.json"},
      {"special_tokens_map.json", "special_tokens_map.json"},
      {"added_tokens.json", "added_tokens.json"},
      {"tokenizer.model", "tokenizer.model"},
      {"llama2-tokenizer.model", "tokenizer.model"},
      {"vocab.json", "vocab.json"},
      {"merges.txt", "merges.txt"},
      {"encoder.json", "vocab.json"},
      {"vocab.bpe", "merges.txt"},
      {"gpt2-encoder.json", "vocab.json"},
      {"gpt2-vocab.bpe", "merges.txt"},
  };
  std::vector<std::string> copied;
  std::set<std::string> written;
  for (const auto& [from, to] : known) {
    const fs::path source = fs::path(dir) / from, target = fs::path(out_dir) / to;
    if (!fs::exists(source) || !written.insert(to).second) continue;
    fs::copy_file(source, target, fs::copy_options::overwrite_existing);
    copied.push_back(target.string());
  }
  if (copied.empty()) {
    fail("export: tokenizer directory {} has no tokenizer files (tokenizer.json, vocab.json + merges.txt, "
         "encoder.json + vocab.bpe or tokenizer.model)",
         dir);
  }
  return copied;
}

HfExportResult export_hf_checkpoint(const HfExportOptions& options) {
  HfExportResult result;
  result.checkpoint = resolve_checkpoint(options.checkpoint);
  auto opened = open_train_checkpoint(result.checkpoint);
  const fs::path dir(result.checkpoint);
  const Config config = load_config_file((dir / "config.yaml").string());
  result.spec = model_spec_from_config(config.model);
  // Each parameter assembled from the slices the ranks wrote.
  std::vector<std::vector<float>> values;
  std::vector<TensorView> ours;
  for (const auto& parameter : parameter_shapes(result.spec)) {
    values.emplace_back(static_cast<size_t>(parameter.numel()));
    opened.reader->read_whole(parameter.name, parameter.shape, values.back().data());
    ours.push_back({parameter.name, DType::F32, parameter.shape, values.back().data(),
                    values.back().size() * sizeof(float)});
  }
  // Written beside the target and swapped in whole: a failed export leaves an earlier one intact.
  StagedDirectory staged(options.out_dir);
  std::vector<std::string> files = write_hf_model(staged.path(), result.spec, ours, options.dtype, options.max_shard_bytes);
  // Without --tokenizer-dir, the run's own tokenizer (data.tokenizer_dir, which token shards'
  // records fill in) when its files are still there.
  std::optional<std::string> tokenizer_dir = options.tokenizer_dir;
  if (!tokenizer_dir && config.data.tokenizer != "byte" && config.data.tokenizer_dir) {
    if (fs::exists(*config.data.tokenizer_dir)) {
      tokenizer_dir = config.data.tokenizer_dir;
      result.tokenizer_from = *tokenizer_dir;
    } else {
      result.tokenizer_from = *config.data.tokenizer_dir + " (gone: pass --tokenizer-dir)";
    }
  }
  if (tokenizer_dir) {
    const auto copied = copy_tokenizer_files(*tokenizer_dir, staged.path());
    files.insert(files.end(), copied.begin(), copied.end());
  }
  staged.keep_other_files();
  staged.commit();
  for (const std::string& file : files) result.files.push_back((fs::path(options.out_dir) / fs::path(file).filename()).string());
  return result;
}

}  // namespace cr
