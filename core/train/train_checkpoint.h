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
#include "memory/loss_scaler.h"
#include "memory/parameter_strategy.h"
#include "memory/weight_source.h"
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
  std::string run;  // the run that wrote it, inherited by resumes; "" in older checkpoints
};

// A fresh run's name: random, so that runs sharing a checkpoint root never prune each other's.
std::string new_run_id();

// Collective over the context's ranks: writes <root>/step_<step> with every rank's `part`, then
// keeps the `keep` newest checkpoints of state.run (0: all); returns its path on every rank. Waiting for the
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

// A training checkpoint's weights (written by any layout) for the parameters `entries`, read
// slice by slice: inference, export and model.init_from. Shapes are checked on opening.
class CheckpointWeights final : public WeightSource {
 public:
  CheckpointWeights(const std::string& dir, const std::vector<FlatEntry>& entries);
  void read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const override;

 private:
  OpenedCheckpoint opened_;
};

// The checkpoint to resume from according to checkpoint.resume, or none.
std::optional<std::string> checkpoint_to_resume(const CheckpointConfig& config, const std::string& root);

}  // namespace cr
