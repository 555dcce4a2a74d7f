// Choosing the next token from a vector of logits: greedy, or a draw after temperature, top-k
// and top-p (nucleus) filtering. The arithmetic runs in double on the host with a fixed
// generator and a fixed tie order, so a seed gives the same tokens on every device and build.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <torch/torch.h>

namespace cr {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax, the lowest id among equal logits)
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the smallest most-likely set whose mass is >= top_p; 1: all
};

// cr::Error naming the option when a value is out of range (negative temperature or top_k,
// top_p outside (0, 1]).
void validate_sampling_options(const SamplingOptions& options);

// The distribution a draw uses, per token id: softmax(logits / temperature) restricted to the
// top_k most likely ids, then to the top_p nucleus, renormalised. Greedy gives a one-hot.
// logits: (V) of any floating type and device.
std::vector<double> sampling_distribution(const torch::Tensor& logits, const SamplingOptions& options);

class TokenSampler {
 public:
  TokenSampler(const SamplingOptions& options, uint64_t seed);

  // The next token id for (V) logits; each call advances the generator (not when greedy).
  int64_t next(const torch::Tensor& logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 generator_;
};

}  // namespace cr
