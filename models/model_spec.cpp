#include "models/model_spec.h"

#include <algorithm>

#include "core/base/error.h"
#include "core/base/shape.h"
#include "core/base/size_limits.h"

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
  auto within = [](const char* key, int64_t value, double max) {
    if (value < 1 || static_cast<double>(value) > max) fail("model.{}: must be in [1, {}], got {}", key, max, value);
  };
  within("n_layer", spec.n_layer, limits::kMaxLayers);
  within("n_head", spec.n_head, limits::kMaxHeads);
  within("n_kv_head", spec.n_kv_head, limits::kMaxHeads);
  within("d_model", spec.d_model, limits::kMaxWidth);
  within("d_ff", spec.d_ff, 4 * limits::kMaxWidth);
  within("vocab_size", spec.vocab_size, limits::kMaxTokens);
  within("max_seq_len", spec.max_seq_len, limits::kMaxTokens);
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

int64_t ParameterShape::numel() const { return element_count(shape); }

std::vector<ParameterShape> parameter_shapes(const ModelSpec& spec) {
  std::vector<ParameterShape> out;
  const int64_t d = spec.d_model;
  const int64_t kv_dim = spec.n_kv_head * (d / spec.n_head);
  const bool llama = spec.arch == "llama", opt = spec.arch == "opt";
  int64_t block = -1;  // the block the lambdas below add to
  auto linear = [&](const std::string& name, int64_t in, int64_t features, bool bias) {
    out.push_back({name + ".weight", {features, in}, block});
    if (bias) out.push_back({name + ".bias", {features}, block});
  };
  auto norm = [&](const std::string& name) {
    out.push_back({name + ".weight", {d}, block});
    if (spec.norm == "layernorm") out.push_back({name + ".bias", {d}, block});
  };
  auto attention = [&](const std::string& prefix, const std::string& output_name) {
    linear(prefix + "q_proj", d, d, spec.bias);
    linear(prefix + "k_proj", d, kv_dim, spec.bias);
    linear(prefix + "v_proj", d, kv_dim, spec.bias);
    linear(prefix + output_name, d, d, spec.bias);
  };
  const int64_t e = embedding_dim(spec);
  if (llama) {
    out.push_back({"embed_tokens.weight", {spec.vocab_size, d}});
    for (int64_t i = 0; i < spec.n_layer; ++i) {
      const std::string layer = "layers." + std::to_string(i) + ".";
      block = i;
      attention(layer + "self_attn.", "o_proj");
      linear(layer + "mlp.gate_proj", d, spec.d_ff, spec.bias);
      linear(layer + "mlp.up_proj", d, spec.d_ff, spec.bias);
      linear(layer + "mlp.down_proj", spec.d_ff, d, spec.bias);
      norm(layer + "input_layernorm");
      norm(layer + "post_attention_layernorm");
    }
    block = -1;
    norm("norm");
    if (!spec.tied_embeddings) linear("lm_head", d, spec.vocab_size, false);
  } else if (opt) {
    // OPT's table has two extra rows: its positions start at 2.
    out.push_back({"decoder.embed_tokens.weight", {spec.vocab_size, e}});
    out.push_back({"decoder.embed_positions.weight", {spec.max_seq_len + 2, d}});
    if (e != d) {
      linear("decoder.project_out", d, e, false);
      linear("decoder.project_in", e, d, false);
    }
    for (int64_t i = 0; i < spec.n_layer; ++i) {
      const std::string layer = "decoder.layers." + std::to_string(i) + ".";
      block = i;
      attention(layer + "self_attn.", "out_proj");
      norm(layer + "self_attn_layer_norm");
      linear(layer + "fc1", d, spec.d_ff, spec.bias);
      linear(layer + "fc2", spec.d_ff, d, spec.bias);
      norm(layer + "final_layer_norm");
    }
    block = -1;
    if (spec.layer_norm_before) norm("decoder.final_layer_norm");
  } else {
    out.push_back({"wte.weight", {spec.vocab_size, d}});
    out.push_back({"wpe.weight", {spec.max_seq_len, d}});
    for (int64_t i = 0; i < spec.n_layer; ++i) {
      const std::string layer = "h." + std::to_string(i) + ".";
      block = i;
      norm(layer + "ln_1");
      linear(layer + "attn.c_attn", d, 3 * d, true);
      linear(layer + "attn.c_proj", d, d, true);
      norm(layer + "ln_2");
      linear(layer + "mlp.c_fc", d, spec.d_ff, true);
      linear(layer + "mlp.c_proj", spec.d_ff, d, true);
    }
    block = -1;
    norm("ln_f");
  }
  return out;
}

int64_t parameter_count(const ModelSpec& spec) {
  int64_t total = 0;
  for (const auto& parameter : parameter_shapes(spec)) total += parameter.numel();
  return total;
}

namespace {

// flops_per_token's N.
int64_t matmul_parameter_count(const ModelSpec& spec) {
  const auto parameters = parameter_shapes(spec);
  const bool own_head = std::any_of(parameters.begin(), parameters.end(),
                                    [](const ParameterShape& p) { return p.name == "lm_head.weight"; });
  int64_t total = 0;
  for (const auto& parameter : parameters) {
    const std::string& name = parameter.name;
    // Biases and norm gains are vectors, applied element-wise.
    if (parameter.shape.size() != 2) continue;
    // Tables that are only indexed: learned positions, and the input embedding when an lm_head
    // of its own is the output embedding (else it is that too, and counted once, as the head).
    if (name == "wpe.weight" || name == "decoder.embed_positions.weight") continue;
    const bool input_embedding =
        name == "wte.weight" || name == "decoder.embed_tokens.weight" || name == "embed_tokens.weight";
    if (input_embedding && own_head) continue;
    total += parameter.numel();
  }
  return total;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> model_identity(const ModelSpec& spec) {
  const auto text = [](auto value) { return fmt::format("{}", value); };
  return {{"arch", spec.arch},
          {"n_layer", text(spec.n_layer)},
          {"n_head", text(spec.n_head)},
          {"n_kv_head", text(spec.n_kv_head)},
          {"d_model", text(spec.d_model)},
          {"d_ff", text(spec.d_ff)},
          {"vocab_size", text(spec.vocab_size)},
          {"max_seq_len", text(spec.max_seq_len)},
          {"word_embed_proj_dim", text(embedding_dim(spec))},
          {"tied_embeddings", text(spec.tied_embeddings)},
          {"bias", text(spec.bias)},
          {"layer_norm_before", text(spec.layer_norm_before)},
          {"norm", spec.norm},
          {"norm_eps", text(spec.norm_eps)},
          {"activation", spec.activation},
          {"position", spec.position},
          {"rope_theta", text(spec.rope_theta)}};
}

double flops_per_token(const ModelSpec& spec, int64_t seq_len) {
  return 6.0 * static_cast<double>(matmul_parameter_count(spec)) +
         12.0 * static_cast<double>(spec.n_layer * spec.d_model * seq_len);
}

}  // namespace cr
