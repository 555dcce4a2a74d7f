// Model dimensions, the preset table and the analytic counts (parameters, FLOPs) that `plan`
// reports without allocating anything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cr {

struct ModelSpec {
  std::string arch = "gpt2";
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t d_model = 0;
  int64_t d_ff = 0;  // MLP hidden width
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;
  double dropout = 0.0;
  bool tied_embeddings = true;
};

struct ModelPreset {
  std::string name;
  std::string description;
  ModelSpec spec;
};

const std::vector<ModelPreset>& model_presets();

// Throws cr::Error naming the unknown preset and the closest known one.
const ModelPreset& find_model_preset(const std::string& name);

// Throws cr::Error naming the dimensions that disagree (d_model not divisible by n_head, ...).
void validate_model_spec(const ModelSpec& spec);

// Every trainable parameter, embeddings included (tied weights counted once).
int64_t parameter_count(const ModelSpec& spec);

// Forward + backward FLOPs per token: 6 N + 12 n_layer d_model seq_len.
double flops_per_token(const ModelSpec& spec, int64_t seq_len);

}  // namespace cr
