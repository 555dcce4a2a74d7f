// What a training checkpoint holds and how it maps onto the live training state: fp32 master
// weights and Adam moments per named parameter, the step, the data position and the config.
// The on-disk layout is described in docs/checkpoint-format.md.
#pragma once

#include <optional>
#include <string>

#include "core/adamw_optimizer.h"
#include "core/config.h"
#include "core/loss_scaler.h"
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
  std::optional<DynamicLossScaler::State> loss_scale;  // fp16 runs
};

// Writes <root>/step_<step> atomically; returns its path. Whole tensors are stored (`master`: the
// flat fp32 weights laid out by `entries`), so the checkpoint loads at any data-parallel size and
// ZeRO stage.
std::string save_train_checkpoint(const std::string& root, const Config& config, const TrainPosition& position,
                                  int data_parallel_size, const std::vector<FlatEntry>& entries,
                                  const torch::Tensor& master, const FullOptimizerState& optimizer);

// Verifies checksums, then loads the weights into `params` and, when `optimizer` is given, the
// whole Adam state into it. Errors name the checkpoint, the file and the tensor that does not fit.
TrainPosition load_train_checkpoint(const std::string& dir, FlatParameters& params,
                                    FullOptimizerState* optimizer = nullptr);

// The checkpoint to resume from according to checkpoint.resume, or none.
std::optional<std::string> checkpoint_to_resume(const CheckpointConfig& config, const std::string& root);

}  // namespace cr
