#include "core/model_factory.h"

namespace cr {

ModelSpec model_spec_from_config(const ModelConfig& config) {
  ModelSpec spec;
  if (config.preset) spec = find_model_preset(*config.preset).spec;
  spec.arch = config.arch;
  if (config.n_layer) spec.n_layer = *config.n_layer;
  if (config.n_head) spec.n_head = *config.n_head;
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

}  // namespace cr
