// The training loop: data -> micro-batches -> forward/backward -> clip -> AdamW -> metrics,
// evaluation and checkpoints, resumable exactly from any checkpoint it wrote.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"

namespace cr {
class Communicator;
}

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
  uint32_t parameters_crc32 = 0;        // of the final fp32 weights: equal on every rank
  int64_t data_parallel_size = 1;
  int64_t gradient_bytes_sent_per_step = 0;  // per rank, ring all-reduce
  int64_t gradient_buckets = 0;              // data parallel: all-reduce buckets per step
  int64_t buckets_overlapped = 0;            // of those, started during the last backward
  int64_t optimizer_state_bytes = 0;         // Adam moments held by this rank
};

// Runs training as configured: alone, or data parallel over `world` (every rank calls this
// with the same config). `device_group` (same members; NCCL for CUDA tensors) carries the
// parameters and gradients when given; `world` always carries host-side agreement (losses,
// stop requests, barriers). Throws cr::Error on bad input (data, checkpoints, config).
TrainSummary run_training(const Config& config, Communicator* world = nullptr, Communicator* device_group = nullptr);

}  // namespace cr
