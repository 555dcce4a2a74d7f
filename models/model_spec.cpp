#include "models/model_spec.h"

#include "core/error.h"
#include "core/strings.h"

namespace cr {
namespace {

ModelSpec gpt2_spec(int64_t n_layer, int64_t n_head, int64_t d_model, int64_t vocab_size,
                    int64_t max_seq_len) {
  ModelSpec spec;
  spec.arch = "gpt2";
  spec.n_layer = n_layer;
  spec.n_head = n_head;
  spec.d_model = d_model;
  spec.d_ff = 4 * d_model;
  spec.vocab_size = vocab_size;
  spec.max_seq_len = max_seq_len;
  return spec;
}

}  // namespace

const std::vector<ModelPreset>& model_presets() {
  // Hugging Face dimensions for the released GPT-2 sizes; the small ones are for tests,
  // quick runs (byte-level vocabulary fits in 512) and the CPU benchmark.
  static const std::vector<ModelPreset> presets = {
      {"gpt2", "GPT-2 124M (Hugging Face gpt2)", gpt2_spec(12, 12, 768, 50257, 1024)},
      {"gpt2-medium", "GPT-2 355M", gpt2_spec(24, 16, 1024, 50257, 1024)},
      {"gpt2-large", "GPT-2 774M", gpt2_spec(36, 20, 1280, 50257, 1024)},
      {"gpt2-xl", "GPT-2 1.5B", gpt2_spec(48, 25, 1600, 50257, 1024)},
      {"gpt2-bench", "CPU benchmark shape: 6 layers, 6 heads, d_model 384, vocab 50304",
       gpt2_spec(6, 6, 384, 50304, 1024)},
      {"gpt2-mini", "4 layers, 4 heads, d_model 128, vocab 512 (byte-level data)",
       gpt2_spec(4, 4, 128, 512, 512)},
      {"gpt2-tiny", "2 layers, 2 heads, d_model 32, vocab 512 (unit tests)",
       gpt2_spec(2, 2, 32, 512, 128)},
  };
  return presets;
}

const ModelPreset& find_model_preset(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& preset : model_presets()) {
    if (preset.name == name) return preset;
    names.push_back(preset.name);
  }
  fail("model.preset: unknown preset '{}'; did you mean '{}'?", name, closest_match(name, names));
}

void validate_model_spec(const ModelSpec& spec) {
  if (spec.arch != "gpt2") fail("model.arch: unknown architecture '{}'", spec.arch);
  auto positive = [](const char* key, int64_t value) {
    if (value < 1) fail("model.{}: must be >= 1, got {}", key, value);
  };
  positive("n_layer", spec.n_layer);
  positive("n_head", spec.n_head);
  positive("d_model", spec.d_model);
  positive("d_ff", spec.d_ff);
  positive("vocab_size", spec.vocab_size);
  positive("max_seq_len", spec.max_seq_len);
  if (spec.d_model % spec.n_head != 0) {
    fail("model: d_model {} is not divisible by n_head {}", spec.d_model, spec.n_head);
  }
}

int64_t parameter_count(const ModelSpec& spec) {
  const int64_t d = spec.d_model;
  const int64_t attention = d * 3 * d + 3 * d + d * d + d;
  const int64_t mlp = d * spec.d_ff + spec.d_ff + spec.d_ff * d + d;
  const int64_t norms = 2 * 2 * d;
  const int64_t per_layer = attention + mlp + norms;
  const int64_t embeddings = spec.vocab_size * d + spec.max_seq_len * d;
  const int64_t head = spec.tied_embeddings ? 0 : spec.vocab_size * d;
  return embeddings + spec.n_layer * per_layer + 2 * d + head;
}

double flops_per_token(const ModelSpec& spec, int64_t seq_len) {
  return 6.0 * static_cast<double>(parameter_count(spec)) +
         12.0 * static_cast<double>(spec.n_layer * spec.d_model * seq_len);
}

}  // namespace cr
