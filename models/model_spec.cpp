#include "models/model_spec.h"

#include "core/error.h"

namespace cr {

ModelSpec arch_defaults(const std::string& arch) {
  ModelSpec spec;
  spec.arch = arch;
  if (arch == "opt") {
    spec.activation = "relu";
  } else if (arch == "llama") {
    spec.norm = "rmsnorm";
    spec.norm_eps = 1e-6;
    spec.activation = "silu";
    spec.position = "rotary";
    spec.tied_embeddings = false;
    spec.bias = false;
  } else if (arch != "gpt2") {
    fail("model.arch: unknown architecture '{}' (gpt2, opt, llama)", arch);
  }
  return spec;
}

int64_t embedding_dim(const ModelSpec& spec) {
  return spec.word_embed_proj_dim > 0 ? spec.word_embed_proj_dim : spec.d_model;
}

void validate_model_spec(const ModelSpec& spec) {
  const ModelSpec fixed = arch_defaults(spec.arch);
  auto positive = [](const char* key, int64_t value) {
    if (value < 1) fail("model.{}: must be >= 1, got {}", key, value);
  };
  positive("n_layer", spec.n_layer);
  positive("n_head", spec.n_head);
  positive("n_kv_head", spec.n_kv_head);
  positive("d_model", spec.d_model);
  positive("d_ff", spec.d_ff);
  positive("vocab_size", spec.vocab_size);
  positive("max_seq_len", spec.max_seq_len);
  if (spec.d_model % spec.n_head != 0) {
    fail("model: d_model {} is not divisible by n_head {}", spec.d_model, spec.n_head);
  }
  if (spec.n_head % spec.n_kv_head != 0) {
    fail("model: n_head {} is not a multiple of n_kv_head {}", spec.n_head, spec.n_kv_head);
  }
  if (spec.norm != "layernorm" && spec.norm != "rmsnorm") fail("model: unknown norm '{}'", spec.norm);
  if (spec.activation != "gelu_new" && spec.activation != "relu" && spec.activation != "silu") {
    fail("model: unknown activation '{}'", spec.activation);
  }
  // Choices the architectures' code fixes: positions and the block layout.
  if (spec.position != fixed.position) {
    fail("model: {} uses {} positions, not {}", spec.arch, fixed.position, spec.position);
  }
  if (spec.arch == "gpt2" && spec.n_kv_head != spec.n_head) {
    fail("model: gpt2's fused q/k/v projection needs n_kv_head {} == n_head {}", spec.n_kv_head, spec.n_head);
  }
  if (spec.arch != "opt" && (spec.word_embed_proj_dim != 0 || !spec.layer_norm_before)) {
    fail("model: word_embed_proj_dim and post-LayerNorm blocks are OPT's, not {}'s", spec.arch);
  }
  if (spec.arch == "gpt2" && !spec.tied_embeddings) fail("model: gpt2 ties its input and output embeddings");
  if ((spec.activation == "silu") != (spec.arch == "llama")) {
    fail("model: activation '{}' does not fit {} (gated silu is LLaMA's MLP)", spec.activation, spec.arch);
  }
}

int64_t parameter_count(const ModelSpec& spec) {
  const int64_t d = spec.d_model;
  const int64_t kv_dim = spec.n_kv_head * (d / spec.n_head);
  const int64_t bias = spec.bias ? 1 : 0;
  const int64_t attention = (d * d + bias * d) * 2 + (d * kv_dim + bias * kv_dim) * 2;  // q, out; k, v
  const bool gated = spec.activation == "silu";
  const int64_t mlp = gated ? 3 * d * spec.d_ff + bias * (2 * spec.d_ff + d)
                            : 2 * d * spec.d_ff + bias * (spec.d_ff + d);
  const int64_t norm = spec.norm == "layernorm" ? 2 * d : d;
  const int64_t per_layer = attention + mlp + 2 * norm;

  const int64_t e = embedding_dim(spec);
  int64_t total = spec.n_layer * per_layer + spec.vocab_size * e;
  if (!spec.tied_embeddings) total += spec.vocab_size * e;
  if (spec.position == "learned") {
    // OPT's table has two extra rows: its positions start at 2.
    total += (spec.max_seq_len + (spec.arch == "opt" ? 2 : 0)) * d;
  }
  if (e != d) total += 2 * e * d;  // project_in, project_out
  if (spec.layer_norm_before) total += norm;  // final norm
  return total;
}

double flops_per_token(const ModelSpec& spec, int64_t seq_len) {
  return 6.0 * static_cast<double>(parameter_count(spec)) +
         12.0 * static_cast<double>(spec.n_layer * spec.d_model * seq_len);
}

}  // namespace cr
