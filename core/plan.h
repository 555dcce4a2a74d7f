// `colossal-run plan`: what a config will do, computed without allocating the model, so that
// planning a 70B run works on a laptop.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "models/model_spec.h"

namespace cr {

// Bytes per rank by category, for one micro-batch in flight.
struct MemoryEstimate {
  int64_t parameters = 0;       // in the compute dtype
  int64_t master_weights = 0;   // fp32 copy when computing in a lower precision
  int64_t gradients = 0;        // fp32 accumulation buffer (+ compute-dtype buffer)
  int64_t optimizer_states = 0; // Adam moments, fp32
  int64_t activations = 0;      // saved for backward, estimated from the layer shapes
  int64_t total() const { return parameters + master_weights + gradients + optimizer_states + activations; }
};

// data_parallel: ranks that share the ZeRO-sharded state (zero.stage >= 1).
MemoryEstimate estimate_memory(const ModelSpec& spec, const Config& config, int data_parallel = 1);

// The full human-readable plan for a job of `world_size` ranks: model, counts, FLOPs, the
// process mesh and its groups, memory per rank, the resolved config.
std::string plan_report(const Config& config, int world_size = 1);

}  // namespace cr
