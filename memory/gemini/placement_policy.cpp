#include "memory/gemini/placement_policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/base/error.h"

namespace cr {

std::vector<ChunkPlacement> initial_placement(const PlacementConfig& config, const std::vector<int64_t>& chunk_bytes) {
  PlacementConfig fractions = config;
  if (config.policy == "cuda") {
    fractions.shard_param_frac = 1.0, fractions.offload_optim_frac = 0.0, fractions.offload_param_frac = 0.0;
  } else if (config.policy == "cpu" || config.policy == "auto") {  // auto starts on the host and moves by use
    fractions.shard_param_frac = 1.0, fractions.offload_optim_frac = 1.0, fractions.offload_param_frac = 1.0;
  } else {
    CR_CHECK(config.policy == "static", "unknown placement policy {}", config.policy);
  }
  const double total = static_cast<double>(std::accumulate(chunk_bytes.begin(), chunk_bytes.end(), int64_t{0}));
  std::vector<ChunkPlacement> placement(chunk_bytes.size());
  // The first chunks whose bytes together stay below fraction x total, each kind counted apart.
  const auto first_chunks = [&](double fraction, auto set) {
    double taken = 0;
    for (size_t c = 0; c < chunk_bytes.size() && taken < fraction * total; ++c) {
      set(placement[c]);
      taken += static_cast<double>(chunk_bytes[c]);
    }
  };
  first_chunks(1.0 - fractions.shard_param_frac, [](ChunkPlacement& p) { p.keep_gathered = true; });
  first_chunks(fractions.offload_optim_frac, [](ChunkPlacement& p) { p.state = Tier::Host; });
  first_chunks(fractions.offload_param_frac, [](ChunkPlacement& p) { p.weights = Tier::Host; });
  double host = 0;
  for (size_t c = 0; c < placement.size(); ++c) {
    if (placement[c].state == Tier::Host) host += static_cast<double>(chunk_bytes[c]);
  }
  double taken = 0;
  for (size_t c = 0; c < placement.size() && taken < config.nvme_offload_fraction * host; ++c) {
    if (placement[c].state != Tier::Host) continue;
    placement[c].state = Tier::Nvme;
    taken += static_cast<double>(chunk_bytes[c]);
  }
  return placement;
}

size_t AccessTrace::next_use(size_t chunk, size_t now) const {
  for (size_t t = now + 1; t < moments_.size(); ++t) {
    if (std::find(moments_[t].begin(), moments_[t].end(), chunk) != moments_[t].end()) return t;
  }
  return npos;
}

std::vector<size_t> eviction_order(const std::vector<size_t>& candidates, const AccessTrace& trace, size_t now) {
  std::vector<std::pair<size_t, size_t>> keyed;  // (next use, chunk)
  for (size_t chunk : candidates) keyed.emplace_back(trace.next_use(chunk, now), chunk);
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<size_t> order;
  for (const auto& [next, chunk] : keyed) order.push_back(chunk);
  return order;
}

int64_t model_data_room(const PlacementConfig& config, int64_t capacity, bool warmup, int64_t non_model_forecast) {
  const double cap = static_cast<double>(capacity);
  if (warmup) return std::llround(cap * (1.0 - config.warmup_non_model_data_ratio));
  return std::llround(cap * config.steady_cuda_cap_ratio) - non_model_forecast;
}

std::vector<size_t> margin_chunks(const PlacementConfig& config, int64_t margin, const std::vector<int64_t>& moved_bytes) {
  std::vector<size_t> chosen;
  double left = static_cast<double>(std::max<int64_t>(margin, 0)) * config.gpu_margin_mem_ratio;
  for (size_t c = 0; c < moved_bytes.size(); ++c) {
    if (static_cast<double>(moved_bytes[c]) > left) break;
    left -= static_cast<double>(moved_bytes[c]);
    chosen.push_back(c);
  }
  return chosen;
}

}  // namespace cr
