// A run's metrics.jsonl (docs/run-directory.md) read back as series against step, for pictures.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cr {

struct SeriesPoint {
  double step = 0, value = 0;
};

struct RunMetrics {
  std::string label;  // the run directory's name
  std::string run;    // the run id of its records ("" for records without one)
  // By field: "loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "peak_host_bytes",
  // "peak_device_bytes"; each in step order, one point per step.
  std::map<std::string, std::vector<SeriesPoint>> series;
  std::optional<double> final_loss, best_val_loss, mean_tokens_per_s;  // from the last summary
  double wall_s = 0;                                                     // summed over summaries
};

// cr::Error naming the directory when it has no metrics.jsonl, and the file and line of a record
// that is not a JSON object with a step (a torn last line of a killed run is skipped).
RunMetrics read_run_metrics(const std::filesystem::path& run_dir);

}  // namespace cr
