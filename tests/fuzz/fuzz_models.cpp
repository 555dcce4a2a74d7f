// Fuzzing Hugging Face model directories and training checkpoints of a tiny model.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/base/error.h"
#include "core/checkpoint/checkpoint_store.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/data/shards.h"
#include "core/formats/hf_config.h"
#include "core/formats/hf_weights.h"
#include "core/formats/safetensors.h"
#include "core/plan/plan.h"
#include "core/text/tokenizer.h"
#include "core/train/hf_export.h"
#include "core/train/hf_import.h"
#include "core/train/mesh_layout.h"
#include "core/train/train_checkpoint.h"
#include "memory/flat_parameters.h"
#include "models/causal_lm.h"
#include "tests/temp_dir.h"

#include "checks.h"
#include "fuzz_cases.h"
#include "isolate.h"
#include "mutators.h"

using namespace cr;
using namespace cr::fuzz;
using cr::test::TempDir;
namespace fs = std::filesystem;

namespace {

// ---- A tiny model, for Hugging Face directories and checkpoints ----

struct TinyModel {
  TinyModel() : model(build_model(find_model_preset("gpt2-tiny").spec, 3)) {
    params = std::make_unique<FlatParameters>(*model, torch::kFloat);
    host = params->master().to(torch::kCPU).contiguous();
  }
  const ModelSpec& spec() const { return model->spec(); }
  const std::vector<FlatEntry>& entries() const { return params->entries(); }
  std::vector<TensorView> views() const {
    std::vector<TensorView> out;
    for (const auto& e : entries()) {
      out.push_back({e.name, DType::F32, e.shape, host.data_ptr<float>() + e.offset, static_cast<size_t>(e.numel) * sizeof(float)});
    }
    return out;
  }

  CausalLM model;
  std::unique_ptr<FlatParameters> params;
  torch::Tensor host;
};

// Every parameter read in full from `source`.
void read_all(const WeightSource& source, const std::vector<FlatEntry>& entries) {
  for (const auto& entry : entries) {
    std::vector<float> out(static_cast<size_t>(entry.numel));
    source.read(entry, 0, entry.numel, out.data());
  }
}

// Everything a run does with model.init_from = dir, and the readers export and tools use.
void open_hf_case(const std::string& dir, const TinyModel& tiny) {
  read_hf_config(dir);
  const HfWeightReader reader(dir);
  for (const auto& name : reader.names()) reader.get(name);
  read_all(*open_init_weights(dir, tiny.entries(), tiny.spec()), tiny.entries());
}

// A file of the directory replaced by each mutation of its bytes (or its JSON).
std::vector<std::pair<std::string, Mutation>> hf_mutations(const fs::path& single, const fs::path& sharded, Rng& rng) {
  std::vector<std::pair<std::string, Mutation>> out;  // (file, mutation)
  const std::string config_text = read_file(single / "config.json");
  const auto config = nlohmann::json::parse(config_text);
  for (auto& m : json_mutations(config, json_pointers(config))) out.push_back({"config.json", std::move(m)});
  for (auto& m : json_text_mutations(config_text, rng)) out.push_back({"config.json", std::move(m)});
  const std::string index_text = read_file(sharded / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(index_text);
  for (auto& m : json_mutations(index, sampled_pointers(index, 12, rng))) out.push_back({"model.safetensors.index.json", std::move(m)});
  for (auto& m : json_text_mutations(index_text, rng)) out.push_back({"model.safetensors.index.json", std::move(m)});
  const std::string first_shard = index["weight_map"].begin()->get<std::string>();
  const std::vector<std::string> targets = {"../" + first_shard, "/etc/passwd", "/" + first_shard, ".", "..", "config.json",
                                            "model.safetensors.index.json", "absent.safetensors",
                                            std::string(5000, 'x') + ".safetensors"};
  for (const std::string& target : targets) {
    auto redirected = index;
    for (auto& [name, file] : redirected["weight_map"].items()) file = target;
    out.push_back({"model.safetensors.index.json", {"every shard = " + excerpt(target, 40), redirected.dump(1)}});
  }
  const std::string weights = read_file(single / "model.safetensors");
  for (auto& m : byte_mutations(weights, rng, 10, 12)) out.push_back({"model.safetensors", std::move(m)});
  return out;
}

// ---- Checkpoints ----

// A training checkpoint of the tiny model, every tensor written as two slices so that readers
// assemble pieces.
std::string write_checkpoint(const fs::path& root, const TinyModel& tiny) {
  const Config config = load_config_text("model: {preset: gpt2-tiny}\ndata: {format: synthetic, seq_len: 32}\n", "fuzz");
  CheckpointPart part;
  const float* base = tiny.host.data_ptr<float>();
  for (const auto& e : tiny.entries()) {
    const int64_t half = e.numel / 2;
    part.slices.push_back({e.name, e.shape, 0, half, 1, 0, base + e.offset});
    part.slices.push_back({e.name, e.shape, half, e.numel - half, 1, 0, base + e.offset + half});
  }
  const ParallelContext single_process;
  TrainState state;
  state.position = {3, 12};
  state.optimizer_steps = 3;
  return save_train_checkpoint(root.string(), config, state, part, tiny.host.numel(), 0, single_process);
}

void open_checkpoint_case(const std::string& dir, const TinyModel& tiny) {
  verify_checkpoint(dir);
  open_train_checkpoint(dir);
  read_all(CheckpointWeights(dir, tiny.entries()), tiny.entries());
}

}  // namespace

TEST_CASE("fuzz: Hugging Face model directories", "[fuzz][hf]") {
  single_threaded();
  TempDir tmp;
  Fuzzer fuzzer("Hugging Face directories");
  Rng rng(0x4F);
  const TinyModel tiny;
  const fs::path single = tmp.path() / "single";
  const fs::path sharded = tmp.path() / "sharded";
  write_hf_model(single.string(), tiny.spec(), tiny.views(), DType::F32);
  write_hf_model(sharded.string(), tiny.spec(), tiny.views(), DType::F32, 40'000);
  REQUIRE(run_isolated([&] { open_hf_case(single.string(), tiny); }).kind == Outcome::Kind::Loaded);
  REQUIRE(run_isolated([&] { open_hf_case(sharded.string(), tiny); }).kind == Outcome::Kind::Loaded);
  auto add = [&](const std::string& name, const std::string& input, const fs::path& dir) {
    fuzzer.add(name, input, {dir.string()}, [dir = dir.string(), &tiny] { open_hf_case(dir, tiny); }, dir);
  };
  int index = 0;
  for (const auto& [file, mutation] : hf_mutations(single, sharded, rng)) {
    const fs::path dir = case_dir(tmp.path(), index++, file == "model.safetensors.index.json" ? sharded : single);
    write_file(dir / file, mutation.bytes);
    add(file + ": " + mutation.name, mutation.bytes, dir);
  }
  for (const auto& [kind, make] : special_files()) {
    for (const std::string file : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
      const fs::path dir = case_dir(tmp.path(), index++, file == "model.safetensors" ? single : sharded);
      fs::remove(dir / file);
      make(dir / file, "{}");
      add(file + " is " + kind, "", dir);
    }
  }
  for (const std::string file : {"config.json", "model.safetensors"}) {
    const fs::path dir = case_dir(tmp.path(), index++, single);
    fs::remove(dir / file);
    add(file + " missing", "", dir);
  }
  fuzzer.finish();
}

TEST_CASE("fuzz: training checkpoints", "[fuzz][checkpoint]") {
  single_threaded();
  TempDir tmp;
  Fuzzer fuzzer("training checkpoints");
  Rng rng(0xC4EC);
  const TinyModel tiny;
  const fs::path base = write_checkpoint(tmp.path() / "root", tiny);
  REQUIRE(run_isolated([&] { open_checkpoint_case(base.string(), tiny); }).kind == Outcome::Kind::Loaded);
  int index = 0;
  auto add = [&](const std::string& name, const std::string& input, const fs::path& dir) {
    fuzzer.add(name, input, {dir.string()}, [dir = dir.string(), &tiny] { open_checkpoint_case(dir, tiny); }, dir);
  };
  const std::string manifest_text = read_file(base / "manifest.json");
  const auto manifest = nlohmann::json::parse(manifest_text);
  std::vector<Mutation> manifest_mutations = json_mutations(manifest, json_pointers(manifest));
  for (auto& m : json_text_mutations(manifest_text, rng)) manifest_mutations.push_back(std::move(m));
  for (const auto& mutation : manifest_mutations) {
    const fs::path dir = case_dir(tmp.path(), index++, base);
    write_file(dir / "manifest.json", mutation.bytes);
    add("manifest.json: " + mutation.name, mutation.bytes, dir);
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(base)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    if (name == "manifest.json") continue;
    for (const auto& mutation : byte_mutations(read_file(base / name), rng, 10, 16)) {
      const fs::path dir = case_dir(tmp.path(), index++, base);
      write_file(dir / name, mutation.bytes);
      add(name + ": " + mutation.name, mutation.bytes, dir);
    }
    const fs::path dir = case_dir(tmp.path(), index++, base);
    fs::remove(dir / name);
    add(name + " removed", "", dir);
  }
  for (const auto& [kind, make] : special_files()) {
    for (const auto& name : names) {
      const fs::path dir = case_dir(tmp.path(), index++, base);
      fs::remove(dir / name);
      make(dir / name, read_file(base / name));
      add(name + " is " + kind, "", dir);
    }
  }
  fuzzer.finish();
}

