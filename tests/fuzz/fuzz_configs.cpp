// Fuzzing configs: every schema key given bad values, and the document itself mangled; what loads
// is dumped, reloaded and planned.
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
      plan_report(config, {world, std::nullopt, true});
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

