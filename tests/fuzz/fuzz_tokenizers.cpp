// Fuzzing tokenizer files: GPT-2 encoder/merges, tokenizer.json and SentencePiece models.
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

