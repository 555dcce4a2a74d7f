// What a training checkpoint holds and how it maps onto the live training state: fp32 master
// weights and Adam moments per named parameter, the step, the data position and the config.
// The on-disk layout is described in docs/checkpoint-format.md.
#pragma once

#include <optional>
#include <string>

#include "core/adamw_optimizer.h"
#include "core/config.h"
#include "memory/flat_parameters.h"

namespace cr {

struct TrainPosition {
  int64_t step = 0;              // optimizer steps completed
  int64_t samples_consumed = 0;  // training samples read, the data position
};

// Adam's state for the whole flat buffer, whichever ranks own its parts.
struct FullOptimizerState {
  int64_t step_count = 0;
  torch::Tensor exp_avg, exp_avg_sq;  // laid out like the flat buffer
};

// Writes <root>/step_<step> atomically; returns its path. Whole tensors are stored, so the
// checkpoint loads at any data-parallel size and ZeRO stage.
std::string save_train_checkpoint(const std::string& root, const Config& config, const TrainPosition& position,
                                  int data_parallel_size, FlatParameters& params, const FullOptimizerState& optimizer);

// The optimizer's state when it owns the whole buffer (no sharding).
FullOptimizerState full_state_of(AdamWOptimizer& optimizer);

// Verifies checksums, then loads weights and (when optimizer is given) Adam state for the
// optimizer's shard.
// Errors name the checkpoint, the file and the tensor that does not fit.
TrainPosition load_train_checkpoint(const std::string& dir, FlatParameters& params, AdamWOptimizer* optimizer);

// The checkpoint to resume from according to checkpoint.resume, or none.
std::optional<std::string> checkpoint_to_resume(const CheckpointConfig& config, const std::string& root);

}  // namespace cr
