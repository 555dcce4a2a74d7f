#include "core/plan/gemini_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/base/strings.h"
#include "core/train/runtime.h"
#include "memory/gemini/gemini_strategy.h"

namespace cr {
namespace {

ChunkLayout layout_of(const std::vector<FlatEntry>& entries, int data_parallel, const Config& config) {
  return make_chunk_layout(entries, data_parallel, gemini_options(config.zero).chunks);
}

}  // namespace

TierBytes gemini_tier_bytes(const std::vector<FlatEntry>& entries, int data_parallel, const Config& config,
                            const std::string& policy, int64_t activations) {
  const ChunkLayout layout = layout_of(entries, data_parallel, config);
  PlacementConfig placement = gemini_options(config.zero).placement;
  placement.policy = policy;
  std::vector<int64_t> elements;
  for (const auto& chunk : layout.chunks) elements.push_back(chunk.numel());
  std::vector<ChunkPlacement> placed = initial_placement(placement, elements);
  const auto dtype = compute_dtype(config.precision);
  const int64_t element = static_cast<int64_t>(c10::elementSize(dtype));
  const int64_t state_parts = dtype == torch::kFloat ? 3 : 4;
  TierBytes bytes;
  const auto add = [&](Tier tier, int64_t value) {
    (tier == Tier::Device ? bytes.device : tier == Tier::Host ? bytes.host : bytes.nvme) += value;
  };
  int64_t blocks = 0;
  for (const auto& entry : entries) blocks = std::max(blocks, entry.layer + 1);
  const ChunkUsers users = chunk_users(entries, layout, blocks);
  const auto gathered = [&](size_t c) {
    const bool serves = data_parallel == 1 && placed[c].weights == Tier::Device;
    return serves ? int64_t{0} : layout.chunks[c].numel() * element;
  };
  for (size_t c = 0; c < layout.chunks.size(); ++c) {
    const int64_t shard = (layout.chunks[c].numel() + data_parallel - 1) / data_parallel;
    add(placed[c].weights, shard * element);
    add(placed[c].state, shard * 4 * state_parts);
    if (placed[c].keep_gathered || layout.keep_gathered) bytes.device += gathered(c);
  }
  for (size_t c : users.outer) bytes.device += gathered(c);
  // The two largest blocks' gathered chunks and gradient staging, and the largest chunks
  // prefetched ahead of them.
  std::vector<int64_t> block_bytes, chunk_bytes;
  for (const auto& list : users.blocks) {
    int64_t sum = 0;
    for (size_t c : list) sum += gathered(c) + layout.chunks[c].numel() * 4;
    block_bytes.push_back(sum);
  }
  for (size_t c = 0; c < layout.chunks.size(); ++c) {  // outer and kept chunks are gathered already
    const bool kept = placed[c].keep_gathered || layout.keep_gathered;
    if (!kept && std::find(users.outer.begin(), users.outer.end(), c) == users.outer.end()) {
      chunk_bytes.push_back(gathered(c));
    }
  }
  const auto add_largest = [&](std::vector<int64_t>& values, int64_t count) {
    std::sort(values.rbegin(), values.rend());
    for (size_t i = 0; i < std::min<size_t>(static_cast<size_t>(count), values.size()); ++i) bytes.device += values[i];
  };
  add_largest(block_bytes, 2);
  add_largest(chunk_bytes, placement.max_prefetch);
  bytes.device += activations;
  return bytes;
}

std::string gemini_plan_section(const std::vector<FlatEntry>& entries, int data_parallel, const Config& config,
                                int64_t activations, std::optional<int64_t> device_budget) {
  const ChunkLayout layout = layout_of(entries, data_parallel, config);
  std::string out = fmt::format(
      "Gemini per rank ({} chunks of {} elements{}, {:.1f}% padding; device includes the gathered chunks of the two "
      "largest blocks, their gradient staging, zero.max_prefetch chunks and activations {}):\n",
      layout.chunks.size(), with_thousands(layout.chunk_size), layout.keep_gathered ? ", kept gathered" : "",
      100.0 * static_cast<double>(layout.padding) /
          static_cast<double>(layout.chunks.back().end + layout.padding),
      human_bytes(static_cast<double>(activations)));
  const auto line = [](const std::string& name, const TierBytes& b) {
    return fmt::format("  {:<22} device {:>11}  host {:>11}  nvme {:>11}\n", name, human_bytes(static_cast<double>(b.device)),
                       human_bytes(static_cast<double>(b.host)), human_bytes(static_cast<double>(b.nvme)));
  };
  for (const std::string policy : {"cuda", "static", "cpu"}) {
    out += line(policy == "static" ? "static (the fractions)" : policy,
                gemini_tier_bytes(entries, data_parallel, config, policy, activations));
  }
  out += "  auto starts as cpu and moves chunks back while the device has room\n";
  if (!device_budget) return out;
  // The first placement that fits, from the least traffic to the most.
  std::vector<std::pair<std::string, Config>> candidates;
  Config variant = config;
  variant.zero.placement_policy = "cuda";
  variant.zero.nvme_offload_fraction = 0;
  candidates.emplace_back("placement_policy cuda", variant);
  variant.zero.placement_policy = "static";
  variant.zero.shard_param_frac = 1, variant.zero.offload_optim_frac = 1, variant.zero.offload_param_frac = 0;
  candidates.emplace_back("placement_policy static, offload_optim_frac 1", variant);
  variant.zero.placement_policy = "cpu";
  variant.zero.offload_optim_frac = 0;
  candidates.emplace_back("placement_policy cpu", variant);
  for (const auto& [name, candidate] : candidates) {
    const std::string policy = *candidate.zero.placement_policy;
    const TierBytes bytes = gemini_tier_bytes(entries, data_parallel, candidate, policy, activations);
    if (bytes.device <= *device_budget) {
      return out + fmt::format("  fits a {} device with {}: device {}, host {}\n",
                               human_bytes(static_cast<double>(*device_budget)), name,
                               human_bytes(static_cast<double>(bytes.device)), human_bytes(static_cast<double>(bytes.host)));
    }
  }
  const TierBytes cpu = gemini_tier_bytes(entries, data_parallel, candidates.back().second, "cpu", activations);
  return out + fmt::format("  does not fit a {} device with any placement: cpu still needs {} there (the largest "
                           "blocks' chunks and activations); lower zero.chunk_size_m or train.micro_batch_size, or add "
                           "ranks\n",
                           human_bytes(static_cast<double>(*device_budget)), human_bytes(static_cast<double>(cpu.device)));
}

}  // namespace cr
