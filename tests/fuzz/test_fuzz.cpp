// Fuzzing the loaders: seeded mutations of every input a run reads (configs, token shards,
// safetensors files, Hugging Face model directories, tokenizer files, training checkpoints),
// each fed to the real loader in a child process. A case must load or fail with a cr::Error
// naming the key or the file; another exception type, a signal or a hang is a defect.
// Inputs are generated here, tiny, so that no shared data is needed.
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
#include "isolate.h"
#include "mutators.h"

using namespace cr;
using namespace cr::fuzz;
using cr::test::TempDir;
namespace fs = std::filesystem;

namespace {

// A broken property of a loaded input (as opposed to a refused one): reported as an escaped
// exception of this type.
struct PropertyViolation : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Children fork from this process: LibTorch must not have started worker threads, which a
// forked child cannot use.
void single_threaded() { torch::set_num_threads(1); }

// A fresh directory per case under `root`, holding a copy of `base` when given.
fs::path case_dir(const fs::path& root, int index, const std::optional<fs::path>& base = std::nullopt) {
  const fs::path dir = root / ("case-" + std::to_string(index));
  fs::remove_all(dir);
  if (base) {
    fs::copy(*base, dir, fs::copy_options::recursive);
  } else {
    fs::create_directories(dir);
  }
  return dir;
}

// Makes a special file at a path; the bytes are the regular file's, for the kinds that keep them.
using MakeSpecial = std::function<void(const fs::path&, const std::string&)>;

// What can stand where a file is expected: a directory, a FIFO (no writer: opening it for
// reading blocks), an unreadable file (root reads it anyway, so it then loads), a dangling
// symlink, a symlink loop.
const std::vector<std::pair<std::string, MakeSpecial>>& special_files() {
  static const std::vector<std::pair<std::string, MakeSpecial>> kinds = {
      {"a directory", [](const fs::path& path, const std::string&) { fs::create_directories(path); }},
      {"a FIFO", [](const fs::path& path, const std::string&) { REQUIRE(::mkfifo(path.c_str(), 0600) == 0); }},
      {::geteuid() == 0 ? "a mode-000 file (read anyway: running as root)" : "an unreadable file (mode 000)",
       [](const fs::path& path, const std::string& bytes) {
         write_file(path, bytes);
         fs::permissions(path, fs::perms::none);
       }},
      {"a dangling symlink", [](const fs::path& path, const std::string&) { fs::create_symlink("absent", path); }},
      {"a symlink loop", [](const fs::path& path, const std::string&) { fs::create_symlink(path.filename(), path); }},
  };
  return kinds;
}

// ---- Configs ----

constexpr const char* kConfigSource = "fuzz.yaml";

// A small, valid config; its resolved dump names every key of the schema, one per line.
const char* kBaseConfig = R"(model: {preset: gpt2-tiny}
data: {format: synthetic, seq_len: 32}
train: {micro_batch_size: 2, global_batch_size: 8, steps: 8, peak_flops: 1.0e9}
runtime: {threads: 1, run_dir: fuzz-run}
)";

std::string base_config_text() { return dump_config(load_config_text(kBaseConfig, "base config")); }

std::string key_leaf(const std::string& path) { return path.substr(path.rfind('.') + 1); }

// Where the line "section:" of the dump starts.
size_t section_start(const std::string& text, const std::string& section) {
  if (text.rfind(section + ":\n", 0) == 0) return 0;
  return text.find("\n" + section + ":\n") + 1;
}

// The line of the dump that holds `path`, and its number (1-based).
std::pair<size_t, int> key_line(const std::string& text, const std::string& path) {
  const std::string section = path.substr(0, path.find('.'));
  const std::string needle = "\n  " + path.substr(section.size() + 1) + ":";
  const size_t section_at = section_start(text, section);
  const size_t at = text.find(needle, section_at) + 1;
  const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
  return {at, line};
}

std::string with_key_value(const std::string& text, const std::string& path, const std::string& value) {
  const size_t at = key_line(text, path).first;
  const size_t end = text.find('\n', at);
  const std::string name = path.substr(path.find('.') + 1);
  return text.substr(0, at) + "  " + name + ": " + value + text.substr(end);
}

// What `colossal-run plan` and the start of a run check after loading, for a few job sizes.
// Plan errors are prefixed so that the judge knows which stage refused the config.
void plan_config(const Config& config) {
  for (const int world : {1, 4}) {
    try {
      plan_report(config, world);
      check_job_layout(config, world);
    } catch (const Error& e) {
      throw Error(std::string("plan: ") + e.what());
    }
  }
}

// Loads, checks that the resolved dump loads back to the same config (config.h promises it),
// then plans.
void load_config_case(const std::string& yaml, const std::vector<std::string>& overrides) {
  const Config config = load_config_text(yaml, kConfigSource, overrides);
  const std::string dump = dump_config(config);
  Config reloaded;
  try {
    reloaded = load_config_text(dump, "the resolved dump");
  } catch (const Error& e) {
    throw PropertyViolation(std::string("the resolved dump does not load back: ") + e.what());
  }
  if (dump_config(reloaded) != dump) throw PropertyViolation("the resolved dump loads back to a different config");
  plan_config(config);
}

bool is_plan_error(const Outcome& outcome) { return outcome.detail.rfind("plan: ", 0) == 0; }

// A config error names the key path, or the file and line of the value when the YAML itself
// cannot be read; a plan error names the key by its path or its name.
std::vector<std::string> config_names(const Outcome& outcome, const std::string& path, int line) {
  if (is_plan_error(outcome)) return {path, key_leaf(path)};
  return {path, std::string(kConfigSource) + ":" + std::to_string(line) + ":"};
}

void fuzz_config_values(Fuzzer& fuzzer, const std::string& base) {
  for (const ConfigKey& key : config_keys()) {
    const int line = key_line(base, key.path).second;
    for (const auto& [name, value] : yaml_replacements()) {
      const std::string yaml = with_key_value(base, key.path, value);
      fuzzer.add(
          key.path + " = " + name, key.path + ": " + value,
          [path = key.path, line](const Outcome& outcome) { return config_names(outcome, path, line); },
          [yaml] { load_config_case(yaml, {}); });
    }
  }
}

// The same values through --set, where a multi-line value cannot occur.
void fuzz_config_overrides(Fuzzer& fuzzer, const std::string& base) {
  for (const ConfigKey& key : config_keys()) {
    for (const auto& [name, value] : yaml_replacements()) {
      if (value.find('\n') != std::string::npos) continue;
      const std::string assignment = key.path + "=" + value;
      fuzzer.add("--set " + key.path + " = " + name, assignment, {key.path, key_leaf(key.path)},
                 [base, assignment] { load_config_case(base, {assignment}); });
    }
  }
  const std::vector<std::string> malformed = {"train.setps=3", "train.steps", "=3", "train.=3", ".steps=1", "train.steps.x=1",
                                              std::string(10000, 'k') + "=1"};
  for (const auto& assignment : malformed) {
    fuzzer.add("--set " + excerpt(assignment, 40), assignment, {"--set"},
               [base, assignment] { load_config_case(base, {assignment}); });
  }
}

// Keys and documents rather than values: unknown and duplicate keys and sections, a second
// document, nesting, a root that is no mapping. Errors name the key, or the file.
std::vector<std::pair<Mutation, std::string>> config_structure_mutations(const std::string& base) {
  std::vector<std::pair<Mutation, std::string>> out;  // (input, a name its error must contain)
  for (const ConfigSection& section : config_sections()) {
    const size_t at = section_start(base, section.name) + section.name.size() + 2;
    out.push_back({{"unknown key in " + section.name, base.substr(0, at) + "  fuzz_unknown: 1\n" + base.substr(at)},
                   section.name + ".fuzz_unknown"});
    out.push_back({{"section " + section.name + " repeated", base + section.name + ": {}\n"}, section.name});
    out.push_back({{"section " + section.name + " a list", base.substr(0, at) + "  - 1\n" + base.substr(at)},
                   kConfigSource});
  }
  for (const ConfigKey& key : config_keys()) {
    const size_t at = key_line(base, key.path).first;
    const std::string line = base.substr(at, base.find('\n', at) + 1 - at);
    out.push_back({{"key " + key.path + " twice", base.substr(0, at) + line + base.substr(at)}, key.path});
  }
  const std::string deep_lists = std::string(100000, '[') + std::string(100000, ']');
  const std::vector<std::pair<std::string, std::string>> documents = {
      {"empty", ""},
      {"comment only", "# nothing\n"},
      {"a list", "- model\n- data\n"},
      {"a scalar", "5\n"},
      {"unknown section", base + "fuzz_section:\n  a: 1\n"},
      {"second document", base + "---\ntrain:\n  steps: 3\n"},
      {"empty second document", base + "---\n"},
      {"document end marker", base + "...\n"},
      {"directive", "%YAML 1.2\n---\n" + base},
      {"tab indentation", "train:\n\tsteps: 3\n"},
      {"bad indentation", "train:\n  steps: 3\n   seed: 4\n"},
      {"unclosed flow mapping", "model: {preset: gpt2-tiny\n"},
      {"100k nested lists as the root", deep_lists},
      {"100k nested lists as a section", "train: " + deep_lists + "\n"},
      {"key that is a list", "train:\n  [a, b]: 1\n"},
      {"section name that is a mapping", "{a: 1}: 2\n"},
      {"merge key", "train:\n  <<: {steps: 3}\n"},
      {"100k-character key", "train:\n  " + std::string(100000, 'k') + ": 1\n"},
      {"invalid UTF-8 key", "train:\n  \xFF\xFE: 1\n"},
      {"NUL byte", std::string("train:\n  steps: 3\0\n", 19)},
      {"anchors and aliases", "train: &t {steps: 3}\nlr_schedule: *t\n"},
      {"billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"},
  };
  for (const auto& [name, text] : documents) out.push_back({{name, text}, kConfigSource});
  return out;
}

void fuzz_config_structure(Fuzzer& fuzzer, const std::string& base) {
  for (const auto& [mutation, name] : config_structure_mutations(base)) {
    // A structural change that still loads may be refused by the plan, which names numbers.
    fuzzer.add(
        mutation.name, mutation.bytes,
        [name = name](const Outcome& outcome) { return std::vector<std::string>{is_plan_error(outcome) ? "plan: " : name}; },
        [yaml = mutation.bytes] { load_config_case(yaml, {}); });
  }
  Rng rng(0xC0F16);
  for (const auto& mutation : byte_mutations(base, rng, 40, 120)) {
    fuzzer.add(mutation.name, mutation.bytes, {kConfigSource, "plan: "}, [yaml = mutation.bytes] { load_config_case(yaml, {}); });
  }
}

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

// ---- Tokenizers ----

// GPT-2's byte-to-character map: printable bytes stand for themselves, the others for
// characters from U+0100 on.
std::string byte_char(int byte) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> chars(256);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const int code = printable ? b : 256 + next++;
      std::string utf8;
      if (code < 0x80) {
        utf8 += static_cast<char>(code);
      } else {
        utf8 += static_cast<char>(0xC0 | (code >> 6));
        utf8 += static_cast<char>(0x80 | (code & 0x3F));
      }
      chars[b] = utf8;
    }
    return chars;
  }();
  return table[static_cast<size_t>(byte)];
}

// A byte-level BPE vocabulary: the 256 bytes, a few merges, the end-of-text token.
struct Gpt2Files {
  nlohmann::json vocab;
  std::vector<std::string> merges;
};

Gpt2Files gpt2_files() {
  Gpt2Files files;
  for (int b = 0; b < 256; ++b) files.vocab[byte_char(b)] = b;
  const std::string space = byte_char(' ');
  files.merges = {space + " t", "h e", space + "t he", "l l", "ll o"};
  int next = 256;
  for (const auto& merge : files.merges) {
    const size_t split = merge.find(' ');
    files.vocab[merge.substr(0, split) + merge.substr(split + 1)] = next++;
  }
  files.vocab["<|endoftext|>"] = next;
  return files;
}

std::string merges_text(const std::vector<std::string>& merges) {
  std::string text = "#version: 0.2\n";
  for (const auto& merge : merges) text += merge + "\n";
  return text;
}

nlohmann::json tokenizer_json(const Gpt2Files& files) {
  auto vocab = files.vocab;
  const int eot = vocab["<|endoftext|>"].get<int>();
  vocab.erase("<|endoftext|>");
  return {{"version", "1.0"},
          {"added_tokens", {{{"id", eot}, {"content", "<|endoftext|>"}, {"special", true}}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", files.merges}}}};
}

// ---- SentencePiece models, written with the protobuf wire format ----

std::string varint(uint64_t value) {
  std::string out;
  do {
    out += static_cast<char>((value & 0x7F) | (value >= 0x80 ? 0x80 : 0));
    value >>= 7;
  } while (value != 0);
  return out;
}

std::string field_bytes(int field, const std::string& bytes) { return varint(static_cast<uint64_t>(field) << 3 | 2) + varint(bytes.size()) + bytes; }
std::string field_varint(int field, uint64_t value) { return varint(static_cast<uint64_t>(field) << 3) + varint(value); }
std::string field_float(int field, float value) {
  std::string out = varint(static_cast<uint64_t>(field) << 3 | 5);
  char bytes[4];
  std::memcpy(bytes, &value, 4);
  return out + std::string(bytes, 4);
}

// A BPE model with <unk>, <s>, </s>, the word-start symbol and a few letters and merges.
std::string sentencepiece_model() {
  struct P {
    const char* text;
    float score;
    int type;  // 1 normal, 2 unknown, 3 control
  };
  const P pieces[] = {{"<unk>", 0, 2}, {"<s>", 0, 3},  {"</s>", 0, 3},  {"\xE2\x96\x81", -1, 1}, {"h", -2, 1},
                      {"e", -3, 1},    {"l", -4, 1},   {"o", -5, 1},    {"w", -6, 1},           {"r", -7, 1},
                      {"d", -8, 1},    {"he", -9, 1},  {"ll", -10, 1},  {"\xE2\x96\x81h", -11, 1}};
  std::string model;
  for (const P& p : pieces) {
    model += field_bytes(1, field_bytes(1, p.text) + field_float(2, p.score) + field_varint(3, static_cast<uint64_t>(p.type)));
  }
  model += field_bytes(2, field_varint(3, 2));  // trainer_spec.model_type = BPE
  model += field_bytes(3, field_bytes(1, "identity") + field_varint(3, 1));
  return model;
}

// Loads, then encodes and decodes a text with what was loaded.
void use_tokenizer(const Tokenizer& tokenizer) {
  const auto ids = tokenizer.encode("hello world, the hello<|endoftext|> \xC3\xA9\xF0\x9F\x99\x82", true);
  tokenizer.decode(ids);
  tokenizer.decode({tokenizer.eot_id()});
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

TEST_CASE("fuzz: configs and plans", "[fuzz][config]") {
  single_threaded();
  const std::string base = base_config_text();
  REQUIRE(run_isolated([&] { load_config_case(base, {}); }).kind == Outcome::Kind::Loaded);
  for (const ConfigKey& key : config_keys()) {
    INFO(key.path);
    REQUIRE(base.find("  " + key.path.substr(key.path.find('.') + 1) + ":") != std::string::npos);
  }
  Fuzzer values("config values");
  fuzz_config_values(values, base);
  values.finish();
  Fuzzer overrides("config --set overrides");
  fuzz_config_overrides(overrides, base);
  overrides.finish();
  Fuzzer structure("config structure");
  fuzz_config_structure(structure, base);
  structure.finish();
}

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

namespace {

void load_gpt2_case(const std::string& dir) { use_tokenizer(*load_gpt2_tokenizer(dir)); }
void load_sentencepiece_case(const std::string& path) { use_tokenizer(*load_sentencepiece_tokenizer(path)); }

// Each file of a GPT-2 tokenizer directory mutated, or replaced by a special file.
void fuzz_gpt2_layout(Fuzzer& fuzzer, const fs::path& root, int& index, Rng& rng, const std::string& layout,
                      const std::vector<std::pair<std::string, std::string>>& files) {
  const fs::path base = case_dir(root, index++);
  for (const auto& [name, text] : files) write_file(base / name, text);
  REQUIRE(run_isolated([&] { load_gpt2_case(base.string()); }).kind == Outcome::Kind::Loaded);
  for (const auto& [name, text] : files) {
    std::vector<Mutation> mutations = byte_mutations(text, rng, 8, 12);
    if (name.find(".json") != std::string::npos) {
      const auto doc = nlohmann::json::parse(text);
      for (auto& m : json_mutations(doc, sampled_pointers(doc, 14, rng))) mutations.push_back(std::move(m));
      for (auto& m : json_text_mutations(text, rng)) mutations.push_back(std::move(m));
    } else {
      for (const char* line : {"a b c", "onlyone", " a", "a ", "\xFF \xFE", "x y"}) {
        mutations.push_back({std::string("merge line '") + line + "'", text + line + "\n"});
      }
    }
    for (const auto& mutation : mutations) {
      const fs::path dir = case_dir(root, index++, base);
      write_file(dir / name, mutation.bytes);
      fuzzer.add(layout + " " + name + ": " + mutation.name, mutation.bytes, {dir.string()},
                 [dir = dir.string()] { load_gpt2_case(dir); }, dir);
    }
    for (const auto& [kind, make] : special_files()) {
      const fs::path dir = case_dir(root, index++, base);
      fs::remove(dir / name);
      make(dir / name, text);
      fuzzer.add(layout + " " + name + " is " + kind, "", {dir.string()}, [dir = dir.string()] { load_gpt2_case(dir); }, dir);
    }
  }
}

void fuzz_sentencepiece(Fuzzer& fuzzer, const fs::path& root, int& index, Rng& rng) {
  const std::string model = sentencepiece_model();
  const fs::path base = case_dir(root, index++);
  write_file(base / "tokenizer.model", model);
  REQUIRE(run_isolated([&] { load_sentencepiece_case(base.string()); }).kind == Outcome::Kind::Loaded);
  std::vector<Mutation> mutations = byte_mutations(model, rng, 24, 40);
  mutations.push_back({"a piece with an unknown type", model + field_bytes(1, field_bytes(1, "q") + field_varint(3, 99))});
  mutations.push_back({"an empty piece", model + field_bytes(1, field_bytes(1, ""))});
  mutations.push_back({"byte fallback on", model + field_bytes(2, field_varint(35, 1))});
  mutations.push_back({"a length past the end", model + varint(1 << 3 | 2) + varint(uint64_t{1} << 62)});
  mutations.push_back({"a 10-byte varint that overflows", model + varint(1 << 3) + std::string(10, '\xFF') + "\x01"});
  for (const auto& mutation : mutations) {
    const fs::path dir = case_dir(root, index++);
    const std::string path = (dir / "tokenizer.model").string();
    write_file(path, mutation.bytes);
    fuzzer.add("tokenizer.model: " + mutation.name, mutation.bytes, {path}, [path] { load_sentencepiece_case(path); }, dir);
  }
  for (const auto& [kind, make] : special_files()) {
    const fs::path dir = case_dir(root, index++);
    const std::string path = (dir / "tokenizer.model").string();
    make(path, model);
    fuzzer.add("tokenizer.model is " + kind + ", given as the file", "", {path}, [path] { load_sentencepiece_case(path); });
    fuzzer.add("tokenizer.model is " + kind + ", given its directory", "", {dir.string()},
               [dir = dir.string()] { load_sentencepiece_case(dir); }, dir);
  }
}

}  // namespace

TEST_CASE("fuzz: tokenizer files", "[fuzz][text]") {
  single_threaded();
  TempDir tmp;
  Fuzzer fuzzer("tokenizer files");
  Rng rng(0x70C);
  const Gpt2Files gpt2 = gpt2_files();
  int index = 0;
  fuzz_gpt2_layout(fuzzer, tmp.path(), index, rng, "openai",
                   {{"encoder.json", gpt2.vocab.dump()}, {"vocab.bpe", merges_text(gpt2.merges)}});
  fuzz_gpt2_layout(fuzzer, tmp.path(), index, rng, "hf", {{"vocab.json", gpt2.vocab.dump()}, {"merges.txt", merges_text(gpt2.merges)}});
  fuzz_gpt2_layout(fuzzer, tmp.path(), index, rng, "tokenizer.json", {{"tokenizer.json", tokenizer_json(gpt2).dump()}});
  fuzz_sentencepiece(fuzzer, tmp.path(), index, rng);
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
