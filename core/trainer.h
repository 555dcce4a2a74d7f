// The training loop: data -> micro-batches -> forward/backward -> clip -> AdamW -> metrics,
// evaluation and checkpoints, resumable exactly from any checkpoint it wrote.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"

namespace cr {

struct TrainSummary {
  int64_t first_step = 0;               // steps already done when this run started (resume)
  std::vector<double> losses;           // per step run here
  std::vector<StepMetrics> steps;       // per step run here
  std::vector<std::pair<int64_t, double>> val_losses;  // (step, loss)
  std::optional<std::string> last_checkpoint;
  double peak_flops = 0;                // the MFU denominator used
  int64_t parameters = 0;
  bool interrupted = false;             // stopped early by SIGINT / SIGTERM
};

// Runs training as configured. Throws cr::Error on bad input (data, checkpoints, config).
TrainSummary run_training(const Config& config);

}  // namespace cr
