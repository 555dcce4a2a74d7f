// Model dimensions, the preset table and the analytic counts (parameters, FLOPs) that `plan`
// reports without allocating anything.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cr {

struct ModelSpec {
  std::string arch = "gpt2";  // gpt2 | opt | llama
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;  // key/value heads; fewer than n_head is grouped-query attention
  int64_t d_model = 0;
  int64_t d_ff = 0;  // MLP hidden width
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;
  double dropout = 0.0;
  std::string norm = "layernorm";      // layernorm | rmsnorm
  double norm_eps = 1e-5;
  std::string activation = "gelu_new";  // gelu_new (tanh GELU) | relu | silu (gated: SwiGLU)
  std::string position = "learned";    // learned | rotary
  double rope_theta = 10000.0;
  bool tied_embeddings = true;
  bool bias = true;  // biases on the attention and MLP projections
  // OPT: token embeddings of this width, projected to and from d_model (opt-350m); 0: d_model.
  int64_t word_embed_proj_dim = 0;
  // OPT: pre-LayerNorm blocks with a final LayerNorm; false: post-LayerNorm, no final norm.
  bool layer_norm_before = true;
};

// The architecture's fixed choices (norm, activation, positions, ...) with zero dimensions:
// the starting point for a spec given dimension by dimension.
ModelSpec arch_defaults(const std::string& arch);

// Width of the token embeddings and of the output embedding.
int64_t embedding_dim(const ModelSpec& spec);

// Every field that decides a parameter's shape or the function the model computes, by name, as
// text, in a fixed order: what two models must share to be the same model. Dropout, a training
// choice, is not one.
std::vector<std::pair<std::string, std::string>> model_identity(const ModelSpec& spec);

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

// One trainable parameter as the built model registers it.
struct ParameterShape {
  std::string name;  // as in named_parameters(), e.g. "h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;
  int64_t layer = -1;  // the transformer block holding it; -1: embeddings, final norm, head
  int64_t numel() const;
};

// Every trainable parameter in registration order, without building the model (so that `plan`
// can lay out a 70B model's buffers on a laptop).
std::vector<ParameterShape> parameter_shapes(const ModelSpec& spec);

// Every trainable parameter, embeddings included (tied weights counted once).
int64_t parameter_count(const ModelSpec& spec);

// Forward + backward FLOPs per token: 6 N + 12 n_layer d_model seq_len. N counts the elements
// of the weight matrices the forward pass multiplies activations by (one multiply-accumulate
// per token forward, two backward): the linear layers' weights and the output embedding (the
// LM head); not biases or norm gains, nor tables only looked up (learned positions, an untied
// input embedding). The second term is attention's scores and weighted values, every
// (query, key) pair counted.
double flops_per_token(const ModelSpec& spec, int64_t seq_len);

}  // namespace cr
