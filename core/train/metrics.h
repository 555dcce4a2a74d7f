// Training metrics: the per-step record, its log line, metrics.jsonl, and the terminal
// progress bar with ETA.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/formats/tfevents.h"
#include "memory/state_bytes.h"

namespace cr {

struct StepMetrics {
  int64_t step = 0;  // 1-based number of optimizer steps done
  int64_t total_steps = 0;
  int64_t tokens_seen = 0;  // training tokens consumed by the end of this step, over all ranks
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double step_time_s = 0;
  double tokens_per_s = 0;
  double flops_per_s = 0;
  double mfu = 0;
  int64_t peak_host_bytes = 0;
  int64_t peak_device_bytes = 0;
  // What this rank sent through every group during the step (bytes_sent_by_process()'s model).
  int64_t bytes_sent = 0;
  // Where the step's time went (seconds, this rank): forward, backward (with the communication
  // it overlaps), gradient communication still running after backward, optimizer, the rest.
  double forward_s = 0, backward_s = 0, communication_s = 0, optimizer_s = 0, other_s = 0;
  double loss_scale = 0;  // fp16: the loss scale this step ran with; 0 otherwise
  bool skipped = false;   // fp16: gradients overflowed, no update
  // Pipelines: idle over compute time summed over the stages, measured (StageExecutor).
  std::optional<double> pipeline_bubble;
  // Benchmarks (HostTensorBytes installed): CPU tensor bytes the step added, at its peak, to those
  // alive when it started: activations and what lives only during a step.
  std::optional<int64_t> step_tensor_bytes;
  // Pipelines, with HostTensorBytes: each stage's step_tensor_bytes (of this rank's pipeline).
  std::vector<int64_t> stage_tensor_bytes;
  StateBytes state;       // this rank's training state
  TierUsage tiers;        // Gemini: bytes by tier and moved between tiers
};

std::string format_step_line(const StepMetrics& m);

// What a run did, for its last record and line.
struct RunTotals {
  int64_t first_step = 0, last_step = 0;
  double wall_s = 0;             // from start-up to the last step
  double mean_tokens_per_s = 0;  // over the steps run, step time only
  double final_loss = 0;
  std::optional<double> best_val_loss;
};

// Appends one JSON object per line to <run_dir>/metrics.jsonl (rank 0 only), each naming the run
// (the id its checkpoints carry): "train" per step, "eval" per evaluation, "summary" at the end.
class MetricsFile {
 public:
  // resumed_step > 0: a run resumed from that step's checkpoint continues the file, first
  // dropping the records of later steps (written after that checkpoint by the interrupted run),
  // so that every step appears once. 0: a new file.
  // `tensorboard`: also TensorBoard event files in a tensorboard/ folder beside it (a new file
  // per invocation).
  MetricsFile(const std::string& path, int64_t resumed_step, std::string run, bool tensorboard);
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;

  void write_step(const StepMetrics& m);
  void write_eval(int64_t step, double val_loss);  // with the perplexity, exp(val_loss)
  void write_summary(const RunTotals& totals);

 private:
  void write_line(const std::string& line);
  std::FILE* file_ = nullptr;
  std::string run_;
  std::unique_ptr<TfEventsWriter> tensorboard_;
};

// Prints a log line every `log_every` steps; on a terminal also redraws a progress bar.
class ProgressReporter {
 public:
  ProgressReporter(int64_t first_step, int64_t total_steps, int64_t log_every, bool bar_allowed);
  void on_step(const StepMetrics& m);
  void print(const std::string& line);  // a line above the bar
  void finish();

 private:
  void draw_bar(const StepMetrics& m);
  void clear_bar();
  int64_t first_step_, total_steps_, log_every_;
  bool bar_;
  bool bar_drawn_ = false;
  double elapsed_s_ = 0;
};

}  // namespace cr
