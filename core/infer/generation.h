// Autoregressive generation: prompt ids in, new ids out, one token at a time, each chosen by a
// TokenSampler from the logits of the last position. The fast path feeds each new token alone
// against a key/value cache of the positions before it; the reference path recomputes the
// whole sequence every step, which is what the cache must reproduce.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/infer/sampling.h"

namespace cr {

// A causal language model seen by generation. Implementations hold one sequence's cache.
class CachedDecoder {
 public:
  virtual ~CachedDecoder() = default;

  virtual int64_t max_seq_len() const = 0;
  // Forgets every cached position.
  virtual void clear_cache() = 0;
  // Number of positions in the cache.
  virtual int64_t cached_length() const = 0;
  // tokens (1, T) int64 at positions cached_length() .. + T - 1 -> their logits (1, T, V);
  // their keys and values join the cache.
  virtual torch::Tensor extend(const torch::Tensor& tokens) = 0;
  // tokens (1, T) -> logits (1, T, V) of the whole sequence, without touching the cache.
  virtual torch::Tensor full_logits(const torch::Tensor& tokens) = 0;
  virtual torch::Device device() const = 0;
};

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  uint64_t seed = 0;
  std::optional<int64_t> stop_token;  // ends generation once produced (it is kept in the output)
  // Ids from here up are never chosen: a model vocabulary padded past the tokenizer's.
  std::optional<int64_t> vocab_limit;
};

enum class StopReason { MaxNewTokens, StopToken, ContextFull };
std::string stop_reason_name(StopReason reason);

struct Generation {
  std::vector<int64_t> tokens;  // the new tokens only
  StopReason stop = StopReason::MaxNewTokens;
};

// Generates with the decoder's cache (cleared first). Stops after max_new_tokens, at the stop
// token, or when the sequence fills the model's context (max_seq_len positions). cr::Error if
// the prompt is empty or alone longer than the context.
Generation generate(CachedDecoder& decoder, const std::vector<int64_t>& prompt, const GenerationOptions& options);

// The same choices, recomputing the full sequence for every new token: the reference for the
// cached path, equal to it token for token up to floating-point rounding.
Generation generate_recomputing(CachedDecoder& decoder, const std::vector<int64_t>& prompt,
                                const GenerationOptions& options);

}  // namespace cr
