#include "core/infer/generation.h"

#include <functional>

#include "core/base/error.h"

namespace cr {
namespace {

torch::Tensor token_row(const std::vector<int64_t>& ids, torch::Device device) {
  return torch::tensor(ids, torch::kLong).view({1, -1}).to(device);
}

void check_prompt(const CachedDecoder& decoder, const std::vector<int64_t>& prompt) {
  if (prompt.empty()) fail("generate: the prompt has no tokens; give at least one");
  if (static_cast<int64_t>(prompt.size()) > decoder.max_seq_len()) {
    fail("generate: the prompt has {} tokens but the model's context (max_seq_len) is {}", prompt.size(),
         decoder.max_seq_len());
  }
}

// The loop both paths share; `last_logits(sequence, new_tokens)` returns the (V) logits of the
// last position after the sequence grew by `new_tokens` (the whole prompt at first).
Generation run_loop(const CachedDecoder& decoder, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                    const std::function<torch::Tensor(const std::vector<int64_t>&, size_t)>& last_logits) {
  check_prompt(decoder, prompt);
  torch::NoGradGuard no_grad;
  TokenSampler sampler(options.sampling, options.seed);
  Generation result;
  std::vector<int64_t> sequence = prompt;
  size_t new_tokens = prompt.size();
  while (static_cast<int64_t>(result.tokens.size()) < options.max_new_tokens) {
    if (static_cast<int64_t>(sequence.size()) >= decoder.max_seq_len()) {
      result.stop = StopReason::ContextFull;
      return result;
    }
    auto logits = last_logits(sequence, new_tokens);
    if (options.vocab_limit) logits = logits.slice(0, 0, *options.vocab_limit);
    const int64_t token = sampler.next(logits);
    sequence.push_back(token);
    result.tokens.push_back(token);
    new_tokens = 1;
    if (options.stop_token && token == *options.stop_token) {
      result.stop = StopReason::StopToken;
      return result;
    }
  }
  result.stop = StopReason::MaxNewTokens;
  return result;
}

}  // namespace

std::string stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::MaxNewTokens: return "max_new_tokens";
    case StopReason::StopToken: return "stop_token";
    case StopReason::ContextFull: return "context_full";
  }
  return "unknown";
}

Generation generate(CachedDecoder& decoder, const std::vector<int64_t>& prompt, const GenerationOptions& options) {
  decoder.clear_cache();
  return run_loop(decoder, prompt, options, [&](const std::vector<int64_t>& sequence, size_t new_tokens) {
    const std::vector<int64_t> fresh(sequence.end() - static_cast<std::ptrdiff_t>(new_tokens), sequence.end());
    return decoder.extend(token_row(fresh, decoder.device()))[0][-1];
  });
}

Generation generate_recomputing(CachedDecoder& decoder, const std::vector<int64_t>& prompt,
                                const GenerationOptions& options) {
  return run_loop(decoder, prompt, options, [&](const std::vector<int64_t>& sequence, size_t) {
    return decoder.full_logits(token_row(sequence, decoder.device()))[0][-1];
  });
}

}  // namespace cr
