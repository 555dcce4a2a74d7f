// The training engine: data -> the step's schedule (micro-batches through forward / backward,
// gradient reduction, optimizer) -> metrics, evaluation and checkpoints, resumable from any
// checkpoint it wrote at any layout (bit for bit at the layout that wrote it). Parallel axes and memory policies plug in through the
// ParallelContext, the ParameterStrategy and the Schedule (docs/architecture.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/train/metrics.h"
#include "memory/gradient_traffic.h"

namespace cr {
class Communicator;
class ParallelContext;
}

namespace cr {

struct TrainSummary {
  int64_t first_step = 0;               // steps already done when this run started (resume)
  std::vector<double> losses;           // per step run here
  std::vector<StepMetrics> steps;       // per step run here
  std::vector<std::pair<int64_t, double>> val_losses;  // (step, loss)
  std::optional<std::string> last_checkpoint;
  double peak_flops = 0;                // the MFU denominator used
  std::string peak_flops_source;        // where it came from
  int64_t parameters = 0;               // of the whole model
  bool interrupted = false;             // stopped early by SIGINT / SIGTERM
  uint32_t parameters_crc32 = 0;        // of this rank's final fp32 weights: equal on ranks holding the same part
  int64_t data_parallel_size = 1;
  GradientTraffic gradients;            // per rank, the last step's
  int64_t optimizer_state_bytes = 0;    // Adam moments held by this rank
  double checkpoint_save_s = 0;         // the last save, start to commit, on this rank
  int64_t checkpoint_bytes_written = 0; // this rank's tensor bytes in the last save
  double checkpoint_load_s = 0;         // reading this rank's slices when resuming
  double startup_s = 0;                 // construction: model, data, weights, strategy
  int64_t startup_peak_host_bytes = 0;  // peak RSS when construction ended
  int64_t steps_start_host_bytes = 0;   // RSS when the steps began: what their peaks add to it is theirs
  RunTotals totals;                     // of the steps run here (none: totals.last_step 0)
};

// Runs training as configured on this rank of `context` (every rank calls it with the same
// config). Throws cr::Error on bad input (data, checkpoints, config).
TrainSummary run_training(const Config& config, const ParallelContext& context);

// The same over `world` split by the config's mesh, on the CPU (null: a single process).
TrainSummary run_training(const Config& config, Communicator* world = nullptr);

}  // namespace cr
