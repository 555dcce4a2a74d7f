#include "core/train/model_factory.h"

#include "core/base/error.h"

namespace cr {

ModelSpec model_spec_from_config(const ModelConfig& config) {
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
  if (!config.preset || !config.d_model || config.d_ff) return "";
  const int64_t preset_d_ff = find_model_preset(*config.preset).spec.d_ff;
  return fmt::format("model.d_model {} without model.d_ff: d_ff becomes 4 x d_model = {} (the preset's is {}; set "
                     "model.d_ff to choose)",
                     *config.d_model, 4 * *config.d_model, preset_d_ff);
}

}  // namespace cr
