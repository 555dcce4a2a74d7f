#include "core/train/model_factory.h"

#include <filesystem>

#include <fmt/ranges.h>

#include "core/base/error.h"
#include "core/formats/hf_config.h"

namespace cr {

namespace {

// model.init_from's config.json, with the dimensions the config gives checked against it: every
// difference named at once, before any model is built. A rotary model's max_seq_len may change
// (its positions need no table).
ModelSpec spec_from_init_dir(const ModelConfig& config) {
  const std::filesystem::path dir(*config.init_from);
  if (std::filesystem::exists(dir / "manifest.json")) {
    fail("model.init_from {} is a colossal-run checkpoint, which carries no config.json: set model.preset (or the "
         "dimensions) of the model it holds",
         dir.string());
  }
  ModelSpec spec = read_hf_config(dir.string());
  std::vector<std::string> conflicts;
  if (config.arch && *config.arch != spec.arch) {
    conflicts.push_back(fmt::format("arch {} ({})", *config.arch, spec.arch));
  }
  const auto check = [&](const char* key, const std::optional<int64_t>& given, int64_t theirs) {
    if (given && *given != theirs) conflicts.push_back(fmt::format("{} {} ({})", key, *given, theirs));
  };
  check("n_layer", config.n_layer, spec.n_layer);
  check("n_head", config.n_head, spec.n_head);
  check("n_kv_head", config.n_kv_head, spec.n_kv_head);
  check("d_model", config.d_model, spec.d_model);
  check("d_ff", config.d_ff, spec.d_ff);
  check("vocab_size", config.vocab_size, spec.vocab_size);
  if (spec.position == "rotary" && config.max_seq_len) {
    spec.max_seq_len = *config.max_seq_len;
  } else {
    check("max_seq_len", config.max_seq_len, spec.max_seq_len);
  }
  if (!conflicts.empty()) {
    fail("model.init_from {}: the config sets {} where the Hugging Face model's config.json has the values in "
         "parentheses; leave them out (the model comes from config.json) or name a model.preset",
         (dir / "config.json").string(), fmt::join(conflicts, ", "));
  }
  spec.dropout = config.dropout;
  validate_model_spec(spec);
  return spec;
}

}  // namespace

ModelSpec model_spec_from_config(const ModelConfig& config) {
  if (!config.preset && config.init_from) return spec_from_init_dir(config);
  ModelSpec spec = arch_defaults(config.arch.value_or("gpt2"));
  if (config.preset) {
    const ModelPreset& preset = find_model_preset(*config.preset);
    if (config.arch && preset.spec.arch != *config.arch) {
      fail("model.arch '{}' does not match model.preset '{}', which is a {} model (set model.arch: {} or leave it out)",
           *config.arch, preset.name, preset.spec.arch, preset.spec.arch);
    }
    spec = preset.spec;
  }
  if (config.n_layer) spec.n_layer = *config.n_layer;
  if (config.n_head) {
    // Multi-head attention stays multi-head; a grouped-query preset keeps its key/value heads.
    const bool multi_head = spec.n_kv_head == spec.n_head || spec.n_kv_head == 0;
    spec.n_head = *config.n_head;
    if (multi_head) spec.n_kv_head = spec.n_head;
  }
  if (config.n_kv_head) spec.n_kv_head = *config.n_kv_head;
  if (config.d_model) {
    spec.d_model = *config.d_model;
    spec.d_ff = 4 * spec.d_model;  // GPT-2's ratio unless d_ff is given too
  }
  if (config.d_ff) spec.d_ff = *config.d_ff;
  if (config.vocab_size) spec.vocab_size = *config.vocab_size;
  if (config.max_seq_len) spec.max_seq_len = *config.max_seq_len;
  spec.dropout = config.dropout;
  validate_model_spec(spec);
  return spec;
}

std::string derived_dimensions_note(const ModelConfig& config) {
  if (!config.preset && config.init_from && config.max_seq_len) {
    const ModelSpec hf = read_hf_config(*config.init_from);
    if (hf.position == "rotary" && hf.max_seq_len != *config.max_seq_len) {
      return fmt::format("model.max_seq_len {} replaces {}'s {} (rotary positions need no table)", *config.max_seq_len,
                         *config.init_from, hf.max_seq_len);
    }
  }
  if (!config.preset || !config.d_model || config.d_ff) return "";
  const int64_t preset_d_ff = find_model_preset(*config.preset).spec.d_ff;
  return fmt::format("model.d_model {} without model.d_ff: d_ff becomes 4 x d_model = {} (the preset's is {}; set "
                     "model.d_ff to choose)",
                     *config.d_model, 4 * *config.d_model, preset_d_ff);
}

}  // namespace cr
