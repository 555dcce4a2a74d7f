// cmd/: the colossal-run executable. Each subcommand is a function from parsed options to an
// exit code; main.cpp parses the command line and turns errors into messages.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cmd/launch.h"
#include "core/plan/plan.h"

namespace cr {

struct ConfigOptions {
  std::optional<std::string> config_path;  // none: the built-in quickstart config
  std::vector<std::string> overrides;      // --set key.path=value
};

struct PrepareCommandOptions {
  std::vector<std::string> inputs;
  std::string output_prefix;
  std::string tokenizer = "byte";
  std::optional<std::string> tokenizer_dir;
  double val_fraction = 0.0;
  int64_t shard_tokens = 100000000;
};

struct BenchOptions {
  std::string preset = "gpt2-bench";
  int64_t layers = 0;  // 0: the preset's
  std::string dtype = "fp32";
  std::string device = "auto";
  int64_t zero_stage = 0;
  int64_t tensor = 1;                 // tensor-parallel ranks; the rest of the job is data parallel
  std::string tensor_mode = "1d";     // parallel.tensor.mode
  int64_t tensor_depth = 1;           // parallel.tensor.depth (2.5d)
  std::string sequence = "none";      // parallel.sequence.mode
  int64_t pipeline = 1;               // pipeline stages
  std::string schedule = "1f1b";
  int64_t microbatches = 1;           // per step and data rank
  int64_t chunks = 1;                 // interleaved
  std::string activation_checkpointing = "none";
  int64_t seq_len = 256;
  int64_t micro_batch_size = 8;
  int64_t warmup_steps = 2;
  int64_t steps = 5;  // measured steps after warm-up
  int64_t threads = 0;
  double peak_flops = 0;  // 0: measure
  std::vector<std::string> sets;  // KEY=VALUE config overrides on top of the above (Gemini's zero.* keys)
};

struct ConvertConfigOptions {
  std::string input;
  std::string output;  // "": stdout
};

struct ReportOptions {
  std::vector<std::string> run_dirs;
  std::string output = "report.html";
};

// Runs in every rank of a job (or alone); `launch` says which rank this is.
int run_train_command(const ConfigOptions& options, const LaunchEnvironment& launch);
int run_plan_command(const ConfigOptions& options, const PlanOptions& plan);
int run_prepare_command(const PrepareCommandOptions& options);
int run_bench_command(const BenchOptions& options, const LaunchEnvironment& launch);
int run_presets_command();  // the model zoo, one line per preset
int run_report_command(const ReportOptions& options);
int run_convert_config_command(const ConvertConfigOptions& options);

}  // namespace cr
