// `colossal-run plan`: what a config will do, computed without allocating the model, so that
// planning a 70B run works on a laptop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/config/config.h"
#include "core/train/pipeline_schedule.h"
#include "core/train/schedule_timeline.h"
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

// Activations one micro-batch keeps for backward: per transformer block, and the LM head's.
struct ActivationBytes {
  double per_block = 0;         // kept per micro-batch in flight
  double head = 0;
  double recomputed_block = 0;  // once per rank: backward's extra (with recompute, the rerun's) at its peak
  double deferred_weight_gradients = 0;  // zero-bubble: per block and micro-batch whose weight gradients wait
};
ActivationBytes activation_bytes(const ModelSpec& spec, const Config& config);

// data_parallel: ranks that share the ZeRO-sharded state (zero.stage >= 1). With
// parallel.tensor > 1, tensor rank 0's slices (it holds the most vocabulary rows).
MemoryEstimate estimate_memory(const ModelSpec& spec, const Config& config, int data_parallel = 1);

// Bytes one rank sends per optimizer step inside the layers, for tensor parallelism (and
// split_gather) and all_to_all sequence parallelism, counting ring collectives: an all-reduce
// sends 2 (T-1)/T of its buffer, an all-gather or reduce-scatter (T-1)/T of the whole, an
// all-to-all (P-1)/P of its input. Per micro-batch: 4 all-reduces of b x s x h per layer
// (2 forward, 2 backward; under split_gather 4 all-gathers + 4 reduce-scatters, the same
// bytes), the embedding's and the loss input's, the loss's per-token max and sums, the
// gradients summed in backward (whole parameters under split_gather, shared key/value heads),
// all_to_all's q, k, v and attention output, forward and backward, and ring_attn's key/value
// blocks (P - 1 hops forward, P - 1 backward) and their fp32 gradients (P hops). 2d, 2.5d and
// 3d grids: grid_traffic.h's terms per micro-batch.
struct LayerTraffic {
  double activations = 0;
  double loss = 0;
  double gradients = 0;
  double sequence = 0;  // all_to_all or ring_attn
  double weights = 0;   // grids: weight strips gathered
  double total() const { return activations + loss + gradients + sequence + weights; }
};
LayerTraffic layer_traffic(const ModelSpec& spec, const Config& config, int data_parallel);

// The full human-readable plan for a job of `world_size` ranks: model, counts, FLOPs, the
// process mesh and its groups, memory per rank, the resolved config.
// A pipeline step of `kind` on the model clock (schedule_timeline.h): `stages` x `micro_batches`,
// `chunks` per stage each doing 1/chunks of a stage's work at `costs`.
PipelineTimeline pipeline_timeline(PipelineScheduleKind kind, int64_t stages, int64_t micro_batches, int64_t chunks,
                                   const ComputeCosts& costs = {});

// Activation memory of each stage at its peak in `timeline` (pipeline_timeline() of
// config.parallel.pipeline's size and partition, `chunks` per stage): the micro-batches it holds
// at once and their bytes.
struct StageActivations {
  double micro_batches = 0;
  double bytes = 0;
};
std::vector<StageActivations> stage_activations(const ModelSpec& spec, const Config& config,
                                                const PipelineTimeline& timeline, int64_t chunks);

struct PlanOptions {
  int world_size = 1;
  std::optional<int64_t> device_memory;  // bytes per rank: whether the predicted peak fits, and what would
  bool verbose = false;                  // also the resolved config, every key
};

std::string plan_report(const Config& config, const PlanOptions& options = {});

// Whether `config`'s predicted peak per rank fits in `device_bytes`, with the peaks of the
// changes that lower it most (ZeRO 3, full activation checkpointing, both) when it does not.
std::string device_fit_section(const ModelSpec& spec, const Config& config, int data_parallel, int64_t device_bytes);

}  // namespace cr
