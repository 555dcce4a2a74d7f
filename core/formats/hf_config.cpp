#include "core/formats/hf_config.h"

#include <filesystem>
#include <fstream>

#include "core/base/error.h"
#include "core/base/strings.h"
#include "core/base/json.h"

namespace cr {
namespace {

const std::vector<HfArchitecture>& architectures() {
  static const std::vector<HfArchitecture> table = {
      {"gpt2", "GPT2LMHeadModel", "gpt2"},
      {"opt", "OPTForCausalLM", "opt"},
      {"llama", "LlamaForCausalLM", "llama"},
  };
  return table;
}

std::string supported_classes() {
  std::string names;
  for (const auto& a : architectures()) names += (names.empty() ? "" : ", ") + a.hf_class;
  return names;
}

// Typed access to config.json keys, each error naming the file and the key.
class Keys {
 public:
  Keys(const nlohmann::json& config, const std::string& source, const std::string& hf_class)
      : config_(config), source_(source), hf_class_(hf_class) {}

  bool has(const char* key) const { return config_.contains(key) && !config_[key].is_null(); }

  int64_t integer(const char* key) const {
    const auto& value = required(key);
    if (!value.is_number_integer()) fail("{}: '{}' must be an integer, got {}", source_, key, shortened(value.dump()));
    // JSON integers past int64 (2^63 and up) would wrap to negatives.
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      fail("{}: '{}' is {}, out of range", source_, key, shortened(value.dump()));
    }
    return value.get<int64_t>();
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!config_[key].is_number()) fail("{}: '{}' must be a number, got {}", source_, key, shortened(config_[key].dump()));
    return config_[key].get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!config_[key].is_boolean()) fail("{}: '{}' must be true or false, got {}", source_, key, shortened(config_[key].dump()));
    return config_[key].get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!config_[key].is_string()) fail("{}: '{}' must be a string, got {}", source_, key, shortened(config_[key].dump()));
    return config_[key].get<std::string>();
  }
  // Fails unless the key is absent or equal to what the model zoo computes.
  void expect_string(const char* key, const std::string& fallback, std::initializer_list<const char*> accepted) const {
    const std::string value = string(key, fallback);
    for (const char* ok : accepted) {
      if (value == ok) return;
    }
    unsupported(key, "'" + value + "'", *accepted.begin());
  }
  void expect_null(const char* key) const {
    if (has(key)) unsupported(key, shortened(config_[key].dump()), "null");
  }
  [[noreturn]] void unsupported(const char* key, const std::string& value, const std::string& supported) const {
    fail("{}: {} '{}' = {} is not supported (supported: {})", source_, hf_class_, key, value, supported);
  }
  void expect_bool(const char* key, bool fallback, bool supported) const {
    if (boolean(key, fallback) != supported) unsupported(key, supported ? "false" : "true", supported ? "true" : "false");
  }

 private:
  const nlohmann::json& required(const char* key) const {
    if (!has(key)) fail("{}: {} config has no '{}'", source_, hf_class_, key);
    return config_[key];
  }

  const nlohmann::json& config_;
  const std::string& source_;
  const std::string& hf_class_;
};

// Dimensions every architecture shares, under each architecture's key names.
void read_dims(const Keys& keys, ModelSpec& spec, const char* layers, const char* heads, const char* width,
               const char* positions) {
  spec.vocab_size = keys.integer("vocab_size");
  spec.n_layer = keys.integer(layers);
  spec.n_head = keys.integer(heads);
  spec.n_kv_head = spec.n_head;
  spec.d_model = keys.integer(width);
  spec.max_seq_len = keys.integer(positions);
}

// ---- GPT-2 (transformers GPT2Config) ----

nlohmann::json gpt2_config(const ModelSpec& spec) {
  return {
      {"vocab_size", spec.vocab_size},
      {"n_positions", spec.max_seq_len},
      {"n_ctx", spec.max_seq_len},
      {"n_embd", spec.d_model},
      {"n_layer", spec.n_layer},
      {"n_head", spec.n_head},
      // null means 4 * n_embd to transformers; an explicit value is equally valid.
      {"n_inner", spec.d_ff},
      {"activation_function", "gelu_new"},  // the tanh approximation the model zoo uses
      {"resid_pdrop", spec.dropout},
      {"embd_pdrop", spec.dropout},
      {"attn_pdrop", spec.dropout},
      {"layer_norm_epsilon", spec.norm_eps},
      {"initializer_range", 0.02},
      {"scale_attn_weights", true},
      {"tie_word_embeddings", true},
  };
}

ModelSpec gpt2_spec(const Keys& keys) {
  ModelSpec spec = arch_defaults("gpt2");
  read_dims(keys, spec, "n_layer", "n_head", "n_embd", "n_positions");
  spec.d_ff = keys.has("n_inner") ? keys.integer("n_inner") : 4 * spec.d_model;
  spec.dropout = keys.number("resid_pdrop", 0.1);
  spec.norm_eps = keys.number("layer_norm_epsilon", 1e-5);
  // gelu_pytorch_tanh is the same function as gelu_new, computed by torch.
  keys.expect_string("activation_function", "gelu_new", {"gelu_new", "gelu_pytorch_tanh"});
  keys.expect_bool("scale_attn_weights", true, true);
  keys.expect_bool("scale_attn_by_inverse_layer_idx", false, false);
  keys.expect_bool("reorder_and_upcast_attn", false, false);
  keys.expect_bool("tie_word_embeddings", true, true);
  return spec;
}

// ---- OPT (transformers OPTConfig) ----

// transformers' OPT LayerNorms use torch's default epsilon; config.json cannot change it.
constexpr double kOptNormEps = 1e-5;

nlohmann::json opt_config(const ModelSpec& spec) {
  if (spec.n_kv_head != spec.n_head) fail("export: OPT has no grouped-query attention (n_kv_head != n_head)");
  if (spec.norm_eps != kOptNormEps) fail("export: OPT's LayerNorm epsilon is fixed at 1e-5, not {}", spec.norm_eps);
  return {
      {"vocab_size", spec.vocab_size},
      {"hidden_size", spec.d_model},
      {"num_hidden_layers", spec.n_layer},
      {"num_attention_heads", spec.n_head},
      {"ffn_dim", spec.d_ff},
      {"max_position_embeddings", spec.max_seq_len},
      {"word_embed_proj_dim", embedding_dim(spec)},
      {"do_layer_norm_before", spec.layer_norm_before},
      {"_remove_final_layer_norm", false},
      {"activation_function", "relu"},
      {"dropout", spec.dropout},
      {"attention_dropout", 0.0},
      {"layerdrop", 0.0},
      {"init_std", 0.02},
      {"enable_bias", spec.bias},
      {"layer_norm_elementwise_affine", true},
      {"tie_word_embeddings", spec.tied_embeddings},
  };
}

ModelSpec opt_spec(const Keys& keys) {
  ModelSpec spec = arch_defaults("opt");
  read_dims(keys, spec, "num_hidden_layers", "num_attention_heads", "hidden_size", "max_position_embeddings");
  spec.d_ff = keys.integer("ffn_dim");
  spec.dropout = keys.number("dropout", 0.1);
  spec.norm_eps = kOptNormEps;
  spec.layer_norm_before = keys.boolean("do_layer_norm_before", true);
  const int64_t embed = keys.has("word_embed_proj_dim") ? keys.integer("word_embed_proj_dim") : spec.d_model;
  spec.word_embed_proj_dim = embed == spec.d_model ? 0 : embed;
  spec.bias = keys.boolean("enable_bias", true);
  spec.tied_embeddings = keys.boolean("tie_word_embeddings", true);
  keys.expect_string("activation_function", "relu", {"relu"});
  keys.expect_bool("layer_norm_elementwise_affine", true, true);
  keys.expect_bool("_remove_final_layer_norm", false, false);
  return spec;
}

// ---- LLaMA (transformers LlamaConfig) ----

nlohmann::json llama_config(const ModelSpec& spec) {
  return {
      {"vocab_size", spec.vocab_size},
      {"hidden_size", spec.d_model},
      {"intermediate_size", spec.d_ff},
      {"num_hidden_layers", spec.n_layer},
      {"num_attention_heads", spec.n_head},
      {"num_key_value_heads", spec.n_kv_head},
      {"head_dim", spec.d_model / spec.n_head},
      {"max_position_embeddings", spec.max_seq_len},
      {"rms_norm_eps", spec.norm_eps},
      {"rope_theta", spec.rope_theta},
      {"rope_scaling", nullptr},
      {"hidden_act", "silu"},
      {"attention_bias", spec.bias},
      {"mlp_bias", spec.bias},
      {"attention_dropout", spec.dropout},
      {"initializer_range", 0.02},
      {"pretraining_tp", 1},
      {"tie_word_embeddings", spec.tied_embeddings},
  };
}

ModelSpec llama_spec(const Keys& keys) {
  ModelSpec spec = arch_defaults("llama");
  read_dims(keys, spec, "num_hidden_layers", "num_attention_heads", "hidden_size", "max_position_embeddings");
  spec.d_ff = keys.integer("intermediate_size");
  if (keys.has("num_key_value_heads")) spec.n_kv_head = keys.integer("num_key_value_heads");
  spec.norm_eps = keys.number("rms_norm_eps", 1e-6);
  spec.rope_theta = keys.number("rope_theta", 10000.0);
  spec.dropout = keys.number("attention_dropout", 0.0);
  spec.bias = keys.boolean("attention_bias", false);
  spec.tied_embeddings = keys.boolean("tie_word_embeddings", false);
  keys.expect_string("hidden_act", "silu", {"silu"});
  keys.expect_bool("mlp_bias", spec.bias, spec.bias);  // one switch for both in the model zoo
  keys.expect_null("rope_scaling");
  if (keys.has("head_dim") && keys.integer("head_dim") * spec.n_head != spec.d_model) {
    keys.unsupported("head_dim", std::to_string(keys.integer("head_dim")), "hidden_size / num_attention_heads");
  }
  return spec;
}

nlohmann::json arch_config(const ModelSpec& spec) {
  if (spec.arch == "opt") return opt_config(spec);
  if (spec.arch == "llama") return llama_config(spec);
  return gpt2_config(spec);
}

ModelSpec arch_spec(const std::string& arch, const Keys& keys) {
  if (arch == "opt") return opt_spec(keys);
  if (arch == "llama") return llama_spec(keys);
  return gpt2_spec(keys);
}

}  // namespace

const HfArchitecture& hf_architecture(const std::string& arch) {
  for (const auto& a : architectures()) {
    if (a.arch == arch) return a;
  }
  fail("model.arch '{}' has no Hugging Face counterpart (supported: {})", arch, supported_classes());
}

nlohmann::json hf_config_from_spec(const ModelSpec& spec, const std::string& torch_dtype) {
  const auto& hf = hf_architecture(spec.arch);
  nlohmann::json config = {{"architectures", {hf.hf_class}}, {"model_type", hf.model_type}};
  config.update(arch_config(spec));
  config.update(hf_special_token_ids(spec));
  config["torch_dtype"] = torch_dtype;
  return config;
}

ModelSpec spec_from_hf_config(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) fail("{}: not a JSON object", source);
  // `architectures` names the class that was saved; old files may only have model_type.
  std::string hf_class, model_type;
  if (const auto classes = config.find("architectures"); classes != config.end() && classes->is_array() &&
                                                          !classes->empty()) {
    if (!classes->front().is_string()) fail("{}: 'architectures' must list strings, got {}", source, shortened(classes->dump()));
    hf_class = classes->front().get<std::string>();
  }
  if (const auto type = config.find("model_type"); type != config.end()) {
    if (!type->is_string()) fail("{}: 'model_type' must be a string, got {}", source, shortened(type->dump()));
    model_type = type->get<std::string>();
  }
  for (const auto& a : architectures()) {
    if (hf_class == a.hf_class || (hf_class.empty() && model_type == a.model_type)) {
      const Keys keys(config, source, a.hf_class);
      ModelSpec spec = arch_spec(a.arch, keys);
      try {
        validate_model_spec(spec);
      } catch (const Error& e) {
        fail("{}: describes a model this build refuses: {}", source, e.what());
      }
      return spec;
    }
  }
  fail("{}: unsupported architecture '{}' (model_type '{}'); supported: {}", source,
       hf_class.empty() ? "(none)" : hf_class, model_type, supported_classes());
}

ModelSpec read_hf_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail("{}: not found (is {} a Hugging Face model directory?)", path, dir);
  return spec_from_hf_config(read_json_file(path), path);
}

void check_hf_spec_matches(const ModelSpec& hf, const ModelSpec& configured, const std::string& source) {
  const auto theirs = model_identity(hf), ours = model_identity(configured);
  // The dimensions a config may set one by one; the others come with the preset.
  const std::string settable = " n_layer n_head n_kv_head d_model d_ff vocab_size max_seq_len ";
  std::vector<std::string> differences;
  for (size_t i = 0; i < theirs.size(); ++i) {
    const auto& [key, value] = theirs[i];
    if (value == ours[i].second) continue;
    const std::string fix = settable.find(" " + key + " ") != std::string::npos
                                ? fmt::format("set model.{}: {}", key, value)
                                : fmt::format("choose a model.preset with {} {}", key, value);
    differences.push_back(fmt::format("the Hugging Face model has {} {} but the configured model has {}; {}", key,
                                      value, ours[i].second, fix));
  }
  // All at once, so that one run shows every fix (or leave model.preset out: the model is config.json's).
  if (!differences.empty()) fail("{}: {}", source, fmt::join(differences, "; "));
}

nlohmann::json hf_special_token_ids(const ModelSpec& spec) {
  // The released vocabularies' ids: GPT-2's <|endoftext|>, OPT's <pad> </s>, LLaMA's <s> </s>.
  if (spec.arch == "gpt2" && spec.vocab_size == 50257) return {{"bos_token_id", 50256}, {"eos_token_id", 50256}};
  if (spec.arch == "opt" && spec.vocab_size == 50272) {
    return {{"pad_token_id", 1}, {"bos_token_id", 2}, {"eos_token_id", 2}};
  }
  if (spec.arch == "llama" && spec.vocab_size == 32000) return {{"bos_token_id", 1}, {"eos_token_id", 2}};
  return nlohmann::json::object();
}

}  // namespace cr
