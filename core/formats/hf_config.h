// Hugging Face config.json <-> ModelSpec, for the architectures the model zoo trains:
// GPT2LMHeadModel (arch gpt2), OPTForCausalLM (opt), LlamaForCausalLM (llama). Only the keys
// that change the computation are read; a value the model zoo cannot reproduce (another
// activation, a different norm epsilon) is an error rather than a silently different model.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "models/model_spec.h"

namespace cr {

// The transformers class name and model_type for our arch; cr::Error for an arch without one.
struct HfArchitecture {
  std::string arch;        // ours: "gpt2"
  std::string hf_class;    // "GPT2LMHeadModel"
  std::string model_type;  // "gpt2"
};
const HfArchitecture& hf_architecture(const std::string& arch);

// config.json for `spec`; torch_dtype is transformers' spelling ("float32", "bfloat16").
nlohmann::json hf_config_from_spec(const ModelSpec& spec, const std::string& torch_dtype);

// The spec a config.json describes. `source` (the file) prefixes every error: unknown
// architecture (listing the supported ones), missing key, unsupported value.
ModelSpec spec_from_hf_config(const nlohmann::json& config, const std::string& source);

// Parses dir/config.json.
ModelSpec read_hf_config(const std::string& dir);

// cr::Error naming the first dimension in which the configured model differs from the one
// the Hugging Face config describes, with both values.
void check_hf_spec_matches(const ModelSpec& hf, const ModelSpec& configured, const std::string& source);

// Token ids for generation_config.json / config.json; empty when the vocabulary is not the
// architecture's released one (e.g. a byte-level test vocabulary).
nlohmann::json hf_special_token_ids(const ModelSpec& spec);

}  // namespace cr
