// What Gemini's placement policies would hold per rank on each tier, from the chunk layout and
// placement the run would make (memory/gemini), and which placement fits a device budget.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "memory/flat_parameters.h"

namespace cr {

struct TierBytes {
  int64_t device = 0, host = 0, nvme = 0;
};

// Peak bytes per rank and tier under `policy` (static takes the config's fractions; auto is
// counted as it starts, like cpu, before its margin moves state back): the weights and fp32
// state where the policy puts them, on the device also the chunks gathered at the peak (the
// outer ones and those of the two largest blocks), their gradient staging, and `activations`.
TierBytes gemini_tier_bytes(const std::vector<FlatEntry>& entries, int data_parallel, const Config& config,
                            const std::string& policy, int64_t activations);

// The plan's lines: the chunk layout, each policy's bytes per tier, and, with a budget, the first
// placement (cuda, static with the optimizer offloaded, cpu, cpu with the NVMe tier) that fits.
std::string gemini_plan_section(const std::vector<FlatEntry>& entries, int data_parallel, const Config& config,
                                int64_t activations, std::optional<int64_t> device_budget);

}  // namespace cr
