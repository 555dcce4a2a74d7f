// Fuzzing token shards, data files and safetensors files.
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

// ---- Token shards and data files ----

constexpr int64_t kVocab = 512;

std::vector<uint32_t> token_ids(size_t count, uint32_t limit) {
  std::vector<uint32_t> ids(count);
  for (size_t i = 0; i < count; ++i) ids[i] = static_cast<uint32_t>((i * 37 + 11) % limit);
  return ids;
}

std::string shard_bytes(const fs::path& dir, const std::string& name, const std::vector<uint32_t>& ids) {
  const fs::path path = dir / name;
  write_shard(path.string(), ids);
  return read_file(path);
}

// Opens the shard directly, reading every token, then as the training data of a run.
void open_shard_case(const std::string& path) {
  const TokenShard shard(path);
  std::vector<int64_t> tokens(static_cast<size_t>(shard.size()));
  shard.copy(0, shard.size(), tokens.data());
  DataConfig data;
  data.format = "tokens";
  data.train = {path};
  data.seq_len = 8;
  const DataSplits splits = open_data(data, kVocab, 1);
  std::vector<int64_t> inputs(8), targets(8);
  BatchSampler(splits.train, 1, true).fill(0, 1, inputs.data(), targets.data());
}

// The same file as a text document of a run with the byte tokenizer.
void open_text_case(const std::string& path) {
  DataConfig data;
  data.format = "text";
  data.tokenizer = "byte";
  data.train = {path};
  data.seq_len = 8;
  open_data(data, kVocab, 1);
}

// Headers: magic, version and token count overwritten; payloads: ids at and past the vocabulary.
std::vector<Mutation> shard_mutations(const fs::path& dir, Rng& rng) {
  const std::string u16 = shard_bytes(dir, "u16.bin", token_ids(300, kVocab));
  const std::string u32 = shard_bytes(dir, "u32.bin", [] {
    auto ids = token_ids(300, kVocab);
    ids[5] = 70000;  // forces 4-byte tokens; an id past the vocabulary too
    return ids;
  }());
  std::vector<Mutation> out;
  for (const auto& [shard_name, bytes] : {std::pair{"u16", u16}, std::pair{"u32", u32}}) {
    for (const auto& [field, offset] : {std::pair{"magic", 0}, std::pair{"version", 4}, std::pair{"token count", 8}}) {
      for (const auto& [value_name, value] : edge_integers()) {
        out.push_back({std::string(shard_name) + " " + field + " = " + value_name, with_le(bytes, offset, value, 4)});
      }
    }
    for (auto& mutation : byte_mutations(bytes, rng, 12, 16)) {
      out.push_back({std::string(shard_name) + " " + mutation.name, std::move(mutation.bytes)});
    }
  }
  out.push_back({"u16 shard with id = vocab", shard_bytes(dir, "at-vocab.bin", {1, 2, 3, kVocab, 4, 5, 6, 7, 8, 9})});
  out.push_back({"u16 shard with id 65535", shard_bytes(dir, "max16.bin", {65535, 1, 2, 3, 4, 5, 6, 7, 8, 9})});
  out.push_back({"u32 shard with id 2^32 - 1", shard_bytes(dir, "max32.bin", {0xFFFFFFFFu, 1, 2, 3, 4, 5, 6, 7, 8, 9})});
  out.push_back({"header only", shard_bytes(dir, "none.bin", {})});
  out.push_back({"8 tokens: no window of 9", shard_bytes(dir, "short.bin", token_ids(8, kVocab))});
  return out;
}

// ---- Safetensors ----

std::string safetensors_bytes(const fs::path& dir) {
  static const float f32[6] = {1, 2, 3, 4, 5, 6};
  static const uint16_t bf16[4] = {0x3F80, 0x4000, 0x4040, 0x4080};
  static const int64_t i64[2] = {7, -7};
  static const uint8_t u8 = 42;
  const std::vector<TensorView> tensors = {
      {"weight", DType::F32, {2, 3}, f32, sizeof f32},
      {"half", DType::BF16, {4}, bf16, sizeof bf16},
      {"index", DType::I64, {2}, i64, sizeof i64},
      {"scalar", DType::U8, {}, &u8, 1},
      {"empty", DType::F32, {0, 3}, nullptr, 0},
  };
  const fs::path path = dir / "base.safetensors";
  write_safetensors(path.string(), tensors, {{"format", "pt"}});
  return read_file(path);
}

// The header's JSON replaced, its length field rewritten to match, the data kept.
std::string with_header(const std::string& file, const std::string& header) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(file[i]);
  return with_le(std::string(8, '\0'), 0, header.size(), 8) + header + file.substr(8 + length);
}

std::string header_of(const std::string& file) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(file[i]);
  return file.substr(8, length);
}

std::vector<Mutation> safetensors_mutations(const std::string& file, Rng& rng) {
  std::vector<Mutation> out;
  for (const auto& [name, value] : edge_integers()) {
    out.push_back({"header length = " + name, with_le(file, 0, value, 8)});
  }
  out.push_back({"header length = file size - 7", with_le(file, 0, file.size() - 7, 8)});
  const auto header = nlohmann::json::parse(header_of(file));
  for (auto& mutation : json_mutations(header, json_pointers(header))) {
    out.push_back({"header " + mutation.name, with_header(file, mutation.bytes)});
  }
  for (auto& mutation : json_text_mutations(header.dump(), rng)) {
    out.push_back({"header text " + mutation.name, with_header(file, mutation.bytes)});
  }
  auto overlapping = header;
  overlapping["half"]["data_offsets"] = overlapping["weight"]["data_offsets"];
  out.push_back({"two tensors at the same offsets", with_header(file, overlapping.dump())});
  auto unknown_dtype = header;
  unknown_dtype["weight"]["dtype"] = "F8_E4M3";
  out.push_back({"unknown dtype", with_header(file, unknown_dtype.dump())});
  auto wrong_shape = header;
  wrong_shape["weight"]["shape"] = {3, 3};
  out.push_back({"shape larger than its bytes", with_header(file, wrong_shape.dump())});
  auto huge_shape = header;
  huge_shape["weight"]["shape"] = {uint64_t{1} << 62, 4};
  out.push_back({"shape overflowing a product", with_header(file, huge_shape.dump())});
  for (auto& mutation : byte_mutations(file, rng, 16, 24)) out.push_back({"file " + mutation.name, std::move(mutation.bytes)});
  return out;
}

// Reads every tensor's bytes, so that views past the data would be touched.
void open_safetensors_case(const std::string& path) {
  const SafetensorsFile file(path);
  unsigned sum = 0;
  for (const auto& name : file.names()) {
    const TensorView& view = file.get(name);
    for (size_t i = 0; i < view.nbytes; ++i) sum += static_cast<const unsigned char*>(view.data)[i];
  }
  if (sum == 0xFFFFFFFFu) std::puts("");  // keeps the reads
}

}  // namespace

TEST_CASE("fuzz: token shards and data files", "[fuzz][data]") {
  single_threaded();
  TempDir tmp;
  Fuzzer fuzzer("token shards and data files");
  Rng rng(0x5AAD);
  int index = 0;
  for (const auto& mutation : shard_mutations(tmp.path(), rng)) {
    const fs::path dir = case_dir(tmp.path(), index++);
    const std::string path = (dir / "shard.bin").string();
    write_file(path, mutation.bytes);
    fuzzer.add(mutation.name, mutation.bytes, {path, "data.train"}, [path] { open_shard_case(path); }, dir);
  }
  const std::string valid = shard_bytes(tmp.path(), "valid.bin", token_ids(300, kVocab));
  for (const auto& [kind, make] : special_files()) {
    const fs::path dir = case_dir(tmp.path(), index++);
    const std::string path = (dir / "shard.bin").string();
    make(path, valid);
    fuzzer.add("shard is " + kind, "", {path}, [path] { open_shard_case(path); });
    fuzzer.add("text file is " + kind, "", {path}, [path] { open_text_case(path); }, dir);
  }
  const std::string long_name = (tmp.path() / std::string(5000, 'n')).string();
  fuzzer.add("a 5000-character path", "", {long_name.substr(0, 200)}, [long_name] { open_shard_case(long_name); });
  const std::string glob = (tmp.path() / "none*.bin").string();
  fuzzer.add("a glob matching nothing", "", {glob}, [glob] { open_shard_case(glob); });
  fuzzer.finish();
}

TEST_CASE("fuzz: safetensors files", "[fuzz][safetensors]") {
  single_threaded();
  TempDir tmp;
  Fuzzer fuzzer("safetensors files");
  Rng rng(0x5AFE);
  const std::string file = safetensors_bytes(tmp.path());
  REQUIRE(run_isolated([&] { open_safetensors_case(tmp.file("base.safetensors")); }).kind == Outcome::Kind::Loaded);
  int index = 0;
  for (const auto& mutation : safetensors_mutations(file, rng)) {
    const fs::path dir = case_dir(tmp.path(), index++);
    const std::string path = (dir / "model.safetensors").string();
    write_file(path, mutation.bytes);
    fuzzer.add(mutation.name, mutation.bytes, {path}, [path] { open_safetensors_case(path); }, dir);
  }
  for (const auto& [kind, make] : special_files()) {
    const fs::path dir = case_dir(tmp.path(), index++);
    const std::string path = (dir / "model.safetensors").string();
    make(path, file);
    fuzzer.add("file is " + kind, "", {path}, [path] { open_safetensors_case(path); }, dir);
  }
  fuzzer.finish();
}

