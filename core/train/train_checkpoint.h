// Training checkpoints: every rank writes the slices of the training state it owns (weights and
// Adam's moments, fp32, under the parameters' names) into its own file of one step directory,
// in parallel; rank 0 writes the manifest last, once every part is durable. Loading reads only
// the slices a rank needs, from whichever files hold them, so any layout loads any other.
// The on-disk layout is described in docs/checkpoint-format.md.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/checkpoint/tensor_slices.h"
#include "core/config/config.h"
#include "memory/flat_parameters.h"
#include "memory/loss_scaler.h"
#include "memory/parameter_strategy.h"
#include "parallel/parallel_context.h"

namespace cr {

struct TrainPosition {
  int64_t step = 0;              // optimizer steps completed
  int64_t samples_consumed = 0;  // training samples read, the data position
};

// What a checkpoint records besides tensors.
struct TrainState {
  TrainPosition position;
  int64_t optimizer_steps = 0;  // Adam's step count (fp16 runs skip overflowing steps)
  std::optional<DynamicLossScaler::State> loss_scale;  // fp16 runs
};

// Collective over the context's ranks: writes <root>/step_<step> with every rank's `part`, then
// keeps the `keep` newest checkpoints (0: all); returns its path on every rank. Waiting for the
// slowest writer (or the pruning) is not subject to the collective timeout.
std::string save_train_checkpoint(const std::string& root, const Config& config, const TrainState& state,
                                  const CheckpointPart& part, int64_t parameters, int64_t keep,
                                  const ParallelContext& context);

// A checkpoint opened for reading: file sizes verified against the manifest; each file's CRC is
// checked when it is first read.
struct OpenedCheckpoint {
  std::string dir;
  nlohmann::json manifest;
  TrainState state;
  std::unique_ptr<SliceReader> reader;
};
OpenedCheckpoint open_train_checkpoint(const std::string& dir);

// Loads every parameter of `params` (whole, fp32) from a training checkpoint: inference,
// export and model.init_from.
TrainPosition load_checkpoint_weights(const std::string& dir, FlatParameters& params);

// The checkpoint to resume from according to checkpoint.resume, or none.
std::optional<std::string> checkpoint_to_resume(const CheckpointConfig& config, const std::string& root);

}  // namespace cr
