#include "models/causal_lm.h"

#include "core/base/error.h"
#include "models/flop_counter.h"
#include "models/gpt2.h"
#include "models/llama.h"
#include "models/lm_loss.h"
#include "models/mixed_precision.h"
#include "models/opt.h"
#include "models/parameter_init.h"

namespace cr {

CausalLMImpl::CausalLMImpl(const ModelSpec& spec, const std::string& arch) : spec_(spec) {
  if (spec.arch != arch) fail("model: a {} spec cannot build a {} model", spec.arch, arch);
  validate_model_spec(spec);
}

torch::Tensor CausalLMImpl::head_loss(const torch::Tensor& x, const torch::Tensor& targets) {
  auto hidden = final_hidden(x);
  return linear_cross_entropy(hidden.reshape({-1, hidden.size(-1)}), cast_to_activation(output_embedding(), hidden),
                              targets.reshape({-1}));
}

torch::Tensor CausalLMImpl::head_logits(const torch::Tensor& x) {
  auto hidden = final_hidden(x);
  auto weight = cast_to_activation(output_embedding(), hidden);
  MatmulCounter::count(hidden.numel() / hidden.size(-1), weight.size(1), weight.size(0));
  return torch::matmul(hidden, weight.t());
}

torch::Tensor CausalLMImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  return head_loss(run_blocks(embed(tokens), 0, spec_.n_layer), targets);
}

torch::Tensor CausalLMImpl::logits(const torch::Tensor& tokens) {
  return head_logits(run_blocks(embed(tokens), 0, spec_.n_layer));
}

torch::Tensor CausalLMImpl::forward_cached(const torch::Tensor& tokens, KVCache& cache) {
  return head_logits(run_blocks(embed(tokens, cache.length()), 0, spec_.n_layer, &cache));
}

void check_sequence_fits(int64_t first_position, int64_t length, int64_t max_seq_len) {
  const int64_t end = first_position + length;
  if (end > max_seq_len) fail("sequence length {} exceeds model.max_seq_len {}", end, max_seq_len);
}

torch::Tensor position_ids(const torch::Tensor& tokens, int64_t first_position, int64_t max_seq_len) {
  check_sequence_fits(first_position, tokens.size(1), max_seq_len);
  return torch::arange(first_position, first_position + tokens.size(1), tokens.options().dtype(torch::kLong));
}

CausalLM build_model_skeleton(const ModelSpec& spec) {
  if (spec.arch == "gpt2") return std::make_shared<GPT2Impl>(spec);
  if (spec.arch == "opt") return std::make_shared<OPTImpl>(spec);
  if (spec.arch == "llama") return std::make_shared<LlamaImpl>(spec);
  fail("model.arch: unknown architecture '{}' (gpt2, opt, llama)", spec.arch);
}

CausalLM build_model(const ModelSpec& spec, uint64_t seed) {
  auto model = build_model_skeleton(spec);
  materialize_parameters(*model, seed);
  return model;
}

}  // namespace cr
