#include "core/infer/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/base/error.h"

namespace cr {
namespace {

std::vector<double> host_logits(const torch::Tensor& logits) {
  if (logits.dim() != 1 || logits.numel() == 0) {
    fail("sampling: expected a non-empty vector of logits, got {} dimensions and {} elements", logits.dim(),
         logits.numel());
  }
  auto host = logits.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return {host.data_ptr<double>(), host.data_ptr<double>() + host.numel()};
}

// Ids by decreasing logit; equal logits keep increasing id order, so ties never depend on the
// sort implementation.
std::vector<int64_t> ids_by_logit(const std::vector<double>& logits) {
  std::vector<int64_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  return order;
}

// A uniform double in [0, 1) from the generator's top 53 bits: std::uniform_real_distribution
// is free to differ between standard libraries.
double uniform01(std::mt19937_64& generator) { return static_cast<double>(generator() >> 11) * 0x1.0p-53; }

}  // namespace

void validate_sampling_options(const SamplingOptions& options) {
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature)) {
    fail("sampling: temperature must be a finite number >= 0 (0: greedy), got {}", options.temperature);
  }
  if (options.top_k < 0) fail("sampling: top_k must be >= 0 (0: no limit), got {}", options.top_k);
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    fail("sampling: top_p must be in (0, 1] (1: no limit), got {}", options.top_p);
  }
}

std::vector<double> sampling_distribution(const torch::Tensor& logits, const SamplingOptions& options) {
  validate_sampling_options(options);
  const auto values = host_logits(logits);
  const auto order = ids_by_logit(values);
  std::vector<double> probs(values.size(), 0.0);
  if (options.temperature == 0.0) {
    probs[order.front()] = 1.0;
    return probs;
  }

  size_t kept = order.size();
  if (options.top_k > 0) kept = std::min(kept, static_cast<size_t>(options.top_k));
  // Softmax over the kept ids, shifted by the largest logit for range.
  const double top = values[order.front()];
  double total = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    const int64_t id = order[i];
    probs[id] = std::exp((values[id] - top) / options.temperature);
    total += probs[id];
  }
  for (size_t i = 0; i < kept; ++i) probs[order[i]] /= total;

  if (options.top_p < 1.0) {
    // The shortest prefix (most likely first) whose mass reaches top_p; always at least one id.
    double mass = 0.0;
    size_t nucleus = 0;
    while (nucleus < kept && mass < options.top_p) mass += probs[order[nucleus++]];
    for (size_t i = nucleus; i < kept; ++i) probs[order[i]] = 0.0;
    for (size_t i = 0; i < nucleus; ++i) probs[order[i]] /= mass;
  }
  return probs;
}

TokenSampler::TokenSampler(const SamplingOptions& options, uint64_t seed) : options_(options), generator_(seed) {
  validate_sampling_options(options_);
}

int64_t TokenSampler::next(const torch::Tensor& logits) {
  const auto probs = sampling_distribution(logits, options_);
  if (options_.temperature == 0.0) {
    return std::max_element(probs.begin(), probs.end()) - probs.begin();
  }
  // Inverse CDF over ids in increasing order; the last id with mass takes any rounding shortfall.
  const double u = uniform01(generator_);
  double cumulative = 0.0;
  int64_t last_with_mass = 0;
  for (size_t id = 0; id < probs.size(); ++id) {
    if (probs[id] == 0.0) continue;
    cumulative += probs[id];
    last_with_mass = static_cast<int64_t>(id);
    if (u < cumulative) return last_with_mass;
  }
  return last_with_mass;
}

}  // namespace cr
