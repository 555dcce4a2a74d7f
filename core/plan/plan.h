// `colossal-run plan`: what a config will do, computed without allocating the model, so that
// planning a 70B run works on a laptop.
#pragma once

#include <cstdint>
#include <string>

#include "core/config/config.h"
#include "core/train/metrics.h"
#include "models/model_spec.h"

namespace cr {

// Bytes per rank by category, for one micro-batch in flight: the training state exactly as the
// trainer lays it out (and reports it, per step), plus estimates of what else is resident at
// the step's peak. docs/zero.md explains each term.
struct MemoryEstimate : StateBytes {
  int64_t activations = 0;  // saved for backward, estimated from the layer shapes
  // Short-lived buffers at backward's peak: the output embedding's gradients (vocab x d) and
  // the targets of gradient reductions in flight.
  int64_t transients = 0;
  // The process itself (libraries, runtimes), measured in this process when it started; CPU
  // only, since a GPU's allocator peak counts tensors alone.
  int64_t process = 0;
  int64_t total() const { return StateBytes::total() + activations + transients + process; }
};

// data_parallel: ranks that share the ZeRO-sharded state (zero.stage >= 1).
MemoryEstimate estimate_memory(const ModelSpec& spec, const Config& config, int data_parallel = 1);

// The full human-readable plan for a job of `world_size` ranks: model, counts, FLOPs, the
// process mesh and its groups, memory per rank, the resolved config.
std::string plan_report(const Config& config, int world_size = 1);

}  // namespace cr
