// The preset table: Hugging Face dimensions for the released models, plus small shapes for tests,
// quick runs (a byte-level vocabulary fits in 512) and the CPU benchmark.
#include "core/base/error.h"
#include "core/base/strings.h"
#include "models/model_spec.h"

namespace cr {
namespace {

ModelSpec dims(const std::string& arch, int64_t n_layer, int64_t n_head, int64_t d_model, int64_t d_ff,
               int64_t vocab_size, int64_t max_seq_len) {
  ModelSpec spec = arch_defaults(arch);
  spec.n_layer = n_layer;
  spec.n_head = n_head;
  spec.n_kv_head = n_head;
  spec.d_model = d_model;
  spec.d_ff = d_ff;
  spec.vocab_size = vocab_size;
  spec.max_seq_len = max_seq_len;
  return spec;
}

ModelSpec gpt2(int64_t n_layer, int64_t n_head, int64_t d_model, int64_t vocab_size, int64_t max_seq_len) {
  return dims("gpt2", n_layer, n_head, d_model, 4 * d_model, vocab_size, max_seq_len);
}

ModelSpec opt(int64_t n_layer, int64_t n_head, int64_t d_model, int64_t vocab_size = 50272,
              int64_t max_seq_len = 2048) {
  return dims("opt", n_layer, n_head, d_model, 4 * d_model, vocab_size, max_seq_len);
}

// opt-350m alone among the OPT sizes: 512-wide embeddings and post-LayerNorm blocks.
ModelSpec opt_350m() {
  ModelSpec spec = opt(24, 16, 1024);
  spec.word_embed_proj_dim = 512;
  spec.layer_norm_before = false;
  return spec;
}

ModelSpec llama(int64_t n_layer, int64_t n_head, int64_t n_kv_head, int64_t d_model, int64_t d_ff,
                int64_t vocab_size, int64_t max_seq_len, double norm_eps, double rope_theta) {
  ModelSpec spec = dims("llama", n_layer, n_head, d_model, d_ff, vocab_size, max_seq_len);
  spec.n_kv_head = n_kv_head;
  spec.norm_eps = norm_eps;
  spec.rope_theta = rope_theta;
  return spec;
}

}  // namespace

const std::vector<ModelPreset>& model_presets() {
  static const std::vector<ModelPreset> presets = {
      {"gpt2", "GPT-2 124M (Hugging Face gpt2)", gpt2(12, 12, 768, 50257, 1024)},
      {"gpt2-medium", "GPT-2 355M", gpt2(24, 16, 1024, 50257, 1024)},
      {"gpt2-large", "GPT-2 774M", gpt2(36, 20, 1280, 50257, 1024)},
      {"gpt2-xl", "GPT-2 1.5B", gpt2(48, 25, 1600, 50257, 1024)},
      {"gpt2-bench", "CPU benchmark shape: 6 layers, 6 heads, d_model 384, vocab 50304",
       gpt2(6, 6, 384, 50304, 1024)},
      {"gpt2-mini", "4 layers, 4 heads, d_model 128, vocab 512 (byte-level data)", gpt2(4, 4, 128, 512, 512)},
      {"gpt2-tiny", "2 layers, 2 heads, d_model 32, vocab 512 (unit tests)", gpt2(2, 2, 32, 512, 128)},

      {"opt-125m", "OPT 125M (Hugging Face facebook/opt-125m)", opt(12, 12, 768)},
      {"opt-350m", "OPT 350M: post-LayerNorm, 512-wide embeddings", opt_350m()},
      {"opt-1.3b", "OPT 1.3B", opt(24, 32, 2048)},
      {"opt-2.7b", "OPT 2.7B", opt(32, 32, 2560)},
      {"opt-6.7b", "OPT 6.7B", opt(32, 32, 4096)},
      {"opt-13b", "OPT 13B", opt(40, 40, 5120)},
      {"opt-30b", "OPT 30B", opt(48, 56, 7168)},
      {"opt-66b", "OPT 66B", opt(64, 72, 9216)},
      {"opt-mini", "4 layers, 4 heads, d_model 128, vocab 512 (byte-level data)", opt(4, 4, 128, 512, 512)},
      {"opt-tiny", "2 layers, 2 heads, d_model 32, vocab 512 (unit tests)", opt(2, 2, 32, 512, 128)},

      {"llama-7b", "LLaMA 7B", llama(32, 32, 32, 4096, 11008, 32000, 2048, 1e-6, 1e4)},
      {"llama-13b", "LLaMA 13B", llama(40, 40, 40, 5120, 13824, 32000, 2048, 1e-6, 1e4)},
      {"llama2-7b", "Llama 2 7B (Hugging Face meta-llama/Llama-2-7b-hf)",
       llama(32, 32, 32, 4096, 11008, 32000, 4096, 1e-5, 1e4)},
      {"llama2-13b", "Llama 2 13B", llama(40, 40, 40, 5120, 13824, 32000, 4096, 1e-5, 1e4)},
      {"llama2-70b", "Llama 2 70B: grouped-query attention, 8 key/value heads",
       llama(80, 64, 8, 8192, 28672, 32000, 4096, 1e-5, 1e4)},
      {"llama3-8b", "Llama 3 8B: 8 key/value heads, 128k vocabulary",
       llama(32, 32, 8, 4096, 14336, 128256, 8192, 1e-5, 5e5)},
      {"llama3-70b", "Llama 3 70B", llama(80, 64, 8, 8192, 28672, 128256, 8192, 1e-5, 5e5)},
      {"llama-mini", "4 layers, 4 heads (2 key/value), d_model 128, vocab 512 (byte-level data)",
       llama(4, 4, 2, 128, 352, 512, 512, 1e-5, 1e4)},
      {"llama-tiny", "2 layers, 4 heads (2 key/value), d_model 32, vocab 512 (unit tests)",
       llama(2, 4, 2, 32, 64, 512, 128, 1e-5, 1e4)},
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

}  // namespace cr
