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

CausalLMImpl::CausalLMImpl(const ModelSpec& spec, const std::string& arch, const TensorParallel& tp)
    : spec_(spec), tp_(tp) {
  if (spec.arch != arch) fail("model: a {} spec cannot build a {} model", spec.arch, arch);
  validate_model_spec(spec);  // tp was checked against the spec when it was made
}

torch::Tensor CausalLMImpl::head_loss(const torch::Tensor& x, const torch::Tensor& targets) {
  // A grid's loss reads its hidden column as it is (grid_parallel.h).
  auto hidden = tp_.grid ? final_hidden(x) : enter_tensor_region(final_hidden(x), tp_);
  const auto head = output_embedding();
  // all_to_all and ring_attn: this rank's tokens are its part of the sequence (split_gather
  // gathered them above).
  // A grid's loss reads the whole micro-batch's targets (its rank owns a part of every token's logits).
  const auto mine = tp_.sequence_size > 1 ? local_sequence(targets, tp_) : targets;
  return vocab_parallel_cross_entropy(hidden.reshape({-1, hidden.size(-1)}), cast_to_activation(head->weight, hidden),
                                      head->first_row(), spec_.vocab_size, mine.reshape({-1}), tp_);
}

torch::Tensor CausalLMImpl::head_logits(const torch::Tensor& x) {
  auto hidden = enter_tensor_region(final_hidden(x), tp_);
  const auto head = output_embedding();
  return vocab_parallel_logits(hidden, cast_to_activation(head->weight, hidden), head->first_row(), spec_.vocab_size,
                               tp_);
}

std::vector<torch::Tensor> CausalLMImpl::head_parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& module : final_modules()) {
    for (const auto& p : module->parameters()) out.push_back(p);
  }
  out.push_back(output_embedding_weight());
  return out;
}

torch::Tensor CausalLMImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  return head_loss(run_blocks(embed(tokens), 0, spec_.n_layer), targets);
}

torch::Tensor CausalLMImpl::logits(const torch::Tensor& tokens) {
  return head_logits(run_blocks(embed(tokens), 0, spec_.n_layer));
}

torch::Tensor CausalLMImpl::forward_cached(const torch::Tensor& tokens, KVCache& cache) {
  return head_logits(run_blocks(embed(tokens, cache.positions(0, tokens.size(1))), 0, spec_.n_layer, &cache));
}

torch::Tensor position_ids(const torch::Tensor& tokens, const torch::Tensor& positions, int64_t max_seq_len) {
  const int64_t count = tokens.size(1);
  if (!positions.defined()) {
    if (count > max_seq_len) fail("sequence length {} exceeds model.max_seq_len {}", count, max_seq_len);
    return torch::arange(count, tokens.options().dtype(torch::kLong));
  }
  CR_CHECK(positions.dim() == 1 && positions.size(0) == count, "{} positions for {} tokens", positions.numel(), count);
  const int64_t end = count == 0 ? 0 : positions.max().item<int64_t>() + 1;
  if (end > max_seq_len) fail("sequence length {} exceeds model.max_seq_len {}", end, max_seq_len);
  return positions.to(tokens.device());
}

namespace {

CausalLM build_architecture(const ModelSpec& spec, const TensorParallel& tp) {
  if (spec.arch == "gpt2") return std::make_shared<GPT2Impl>(spec, tp);
  if (spec.arch == "opt") return std::make_shared<OPTImpl>(spec, tp);
  if (spec.arch == "llama") return std::make_shared<LlamaImpl>(spec, tp);
  fail("model.arch: unknown architecture '{}' (gpt2, opt, llama)", spec.arch);
}

}  // namespace

CausalLM build_model_skeleton(const ModelSpec& spec, const TensorParallel& tp) {
  auto model = build_architecture(spec, tp);
  // Whole parameters are copies on every tensor rank: the first rank's are primary.
  set_whole_parameters_primary(*model, tp.rank == 0);
  return model;
}

CausalLM build_model(const ModelSpec& spec, uint64_t seed, const TensorParallel& tp) {
  auto model = build_model_skeleton(spec, tp);
  materialize_parameters(*model, seed);
  return model;
}

}  // namespace cr
