// colossal-run: command line parsing and the one place where errors become messages and exit
// codes (0 done, 1 error, 2 usage, 130 stopped by a signal).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "cmd/commands.h"
#include "cmd/config_source.h"
#include "cmd/eval_command.h"
#include "cmd/export_command.h"
#include "cmd/generate_command.h"
#include "cmd/job.h"
#include "cmd/launch.h"
#include "cmd/serve_command.h"
#include "core/base/crash_report.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/strings.h"
#include "core/infer/inference_model.h"
#include "core/train/mesh_layout.h"
#include "core/train/runtime.h"
#include "parallel/mpi_communicator.h"

namespace {

constexpr const char* kVersion = "0.1.0";

void add_config_options(CLI::App* app, cr::ConfigOptions& options) {
  app->add_option_function<std::string>(
         "-c,--config", [&options](const std::string& path) { options.config_path = path; },
         "YAML config file (default: the built-in quickstart)")
      ->type_name("FILE");
  app->add_option("--set", options.overrides, "override a config key, e.g. --set train.steps=100")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
}

}  // namespace

int main(int argc, char** argv) {
  cr::install_crash_report();
  cr::process_baseline_bytes();  // before any work: what `plan` and `bench` count for the process
  CLI::App app{"colossal-run: train large transformer models from a YAML config"};
  app.set_version_flag("--version", std::string("colossal-run ") + kVersion);
  app.require_subcommand(0, 1);
  // --help shows each option's default.
  app.option_defaults()->always_capture_default();

  cr::ConfigOptions train_options;
  int nprocs = 1;
  std::optional<std::string> hostfile;
  auto add_launch_options = [&](CLI::App* command) {
    command->add_option("--nprocs", nprocs, "processes to launch through mpirun (data-parallel ranks)")
        ->check(CLI::PositiveNumber);
    command->add_option_function<std::string>(
        "--hostfile", [&](const std::string& file) { hostfile = file; },
        "hosts for mpirun, one 'host slots=N' per line")->type_name("FILE");
  };
  // `colossal-run --config X` means `colossal-run train --config X`.
  add_config_options(&app, train_options);
  add_launch_options(&app);
  auto* train = app.add_subcommand("train", "train a model (the default command)");
  add_config_options(train, train_options);
  add_launch_options(train);

  cr::ConfigOptions plan_options;
  cr::PlanOptions plan_report_options;
  auto* plan = app.add_subcommand("plan", "validate a config and print parameters, FLOPs, the mesh and memory per rank");
  add_config_options(plan, plan_options);
  plan->add_option("--nprocs", plan_report_options.world_size, "ranks of the job to plan for")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  std::string plan_device_memory;  // parsed with the other errors' handling below
  plan->add_option("--device-memory", plan_device_memory,
                   "memory per rank (e.g. 80GB, 24GiB): whether the predicted peak fits, and what would");
  plan->add_flag("--verbose", plan_report_options.verbose, "also print the resolved config, every key");

  cr::PrepareCommandOptions prepare_options;
  auto* prepare = app.add_subcommand("prepare", "tokenize text files into token shards");
  prepare->add_option("inputs", prepare_options.inputs, "text files (documents)")->required();
  prepare->add_option("-o,--output", prepare_options.output_prefix, "output prefix, e.g. data/shakespeare")->required();
  prepare->add_option("--tokenizer", prepare_options.tokenizer, "byte, gpt2 or sentencepiece")
      ->check(CLI::IsMember({"byte", "gpt2", "sentencepiece"}));
  prepare->add_option_function<std::string>(
      "--tokenizer-dir", [&](const std::string& dir) { prepare_options.tokenizer_dir = dir; },
      "GPT-2: encoder.json + vocab.bpe, vocab.json + merges.txt or tokenizer.json; SentencePiece: tokenizer.model");
  prepare->add_option("--val-fraction", prepare_options.val_fraction, "fraction of tokens for validation")
      ->check(CLI::Range(0.0, 0.5));
  prepare->add_option("--shard-tokens", prepare_options.shard_tokens, "tokens per shard")->check(CLI::PositiveNumber);

  cr::BenchOptions bench_options;
  auto* bench = app.add_subcommand("bench", "benchmark training throughput; prints one JSON line");
  add_launch_options(bench);
  bench->add_option("--preset", bench_options.preset, "model preset");
  bench->add_option("--dtype", bench_options.dtype, "fp32, bf16 or fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  bench->add_option("--zero-stage", bench_options.zero_stage, "ZeRO stage 0-3")->check(CLI::Range(0, 3));
  bench->add_option("--tensor", bench_options.tensor, "tensor-parallel ranks")->check(CLI::PositiveNumber);
  bench->add_option("--tensor-mode", bench_options.tensor_mode, "1d, 2d, 2.5d or 3d")
      ->check(CLI::IsMember({"1d", "2d", "2.5d", "3d"}));
  bench->add_option("--tensor-depth", bench_options.tensor_depth, "2.5d: stacked grids")->check(CLI::PositiveNumber);
  bench->add_option("--sequence", bench_options.sequence, "sequence parallelism: none or split_gather")
      ->check(CLI::IsMember({"none", "split_gather"}));
  bench->add_option("--layers", bench_options.layers, "transformer blocks (0: the preset's)")->check(CLI::NonNegativeNumber);
  bench->add_option("--pipeline", bench_options.pipeline, "pipeline stages")->check(CLI::PositiveNumber);
  bench->add_option("--activation-checkpointing", bench_options.activation_checkpointing, "none, full or selective")
      ->check(CLI::IsMember({"none", "full", "selective"}));
  bench->add_option("--schedule", bench_options.schedule, "pipeline schedule: gpipe, 1f1b, interleaved or zero_bubble")
      ->check(CLI::IsMember({"gpipe", "1f1b", "interleaved", "zero_bubble"}));
  bench->add_option("--microbatches", bench_options.microbatches, "micro-batches per step (pipelines)")
      ->check(CLI::PositiveNumber);
  bench->add_option("--chunks", bench_options.chunks, "model chunks per stage (interleaved)")->check(CLI::PositiveNumber);
  bench->add_option("--device", bench_options.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  bench->add_option("--seq-len", bench_options.seq_len, "sequence length")->check(CLI::PositiveNumber);
  bench->add_option("--micro-batch", bench_options.micro_batch_size, "micro-batch size")->check(CLI::PositiveNumber);
  bench->add_option("--warmup", bench_options.warmup_steps, "unmeasured steps")->check(CLI::NonNegativeNumber);
  bench->add_option("--steps", bench_options.steps, "measured steps")->check(CLI::PositiveNumber);
  bench->add_option("--set", bench_options.sets,
                    "override a config key of the benchmark's run, e.g. --set zero.placement_policy=auto");
  bench->add_option("--threads", bench_options.threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber);
  bench->add_option("--peak-flops", bench_options.peak_flops, "MFU denominator in FLOP/s (0: a known GPU's datasheet peak, else a GEMM measured at start-up)")
      ->check(CLI::NonNegativeNumber);

  cr::EvalCommandOptions eval_options;
  auto* eval = app.add_subcommand("eval", "loss and perplexity of the trained model over data.val (else data.train)");
  add_config_options(eval, eval_options.config);
  add_launch_options(eval);
  eval->add_option_function<int64_t>(
          "--max-batches", [&](int64_t n) { eval_options.max_batches = n; }, "evaluate at most N batches (default: all)")
      ->check(CLI::PositiveNumber);

  cr::GenerateCommandOptions generate_options;
  auto* generate = app.add_subcommand("generate", "continue a prompt with the trained model (KV cache)");
  add_config_options(generate, generate_options.config);
  add_launch_options(generate);
  generate->add_option("--prompt", generate_options.prompt, "text to continue")->required();
  generate->add_option("--max-new-tokens", generate_options.max_new_tokens, "tokens to generate")
      ->check(CLI::PositiveNumber);
  generate->add_option("--temperature", generate_options.temperature, "0: greedy")->check(CLI::NonNegativeNumber);
  generate->add_option("--top-k", generate_options.top_k, "keep the k most likely tokens; 0: all")
      ->check(CLI::NonNegativeNumber);
  generate->add_option("--top-p", generate_options.top_p, "keep the smallest set with this mass; 1: all")
      ->check(CLI::Range(0.0, 1.0));
  generate->add_option("--seed", generate_options.seed, "sampling seed");

  cr::ServeCommandOptions serve_options;
  auto* serve =
      app.add_subcommand("serve", "serve the trained model over an OpenAI-compatible HTTP API (docs/serving.md)");
  add_config_options(serve, serve_options.config);
  add_launch_options(serve);
  serve->add_option_function<std::string>(
      "--host", [&](const std::string& host) { serve_options.host = host; },
      "address to listen on (default: serve.host)");
  serve->add_option_function<int64_t>(
           "--port", [&](int64_t port) { serve_options.port = port; },
           "port to listen on; 0: any free one (default: serve.port)")
      ->check(CLI::Range(0, 65535));

  cr::LoadOptions load_options;
  auto* bench_serve =
      app.add_subcommand("bench-serve", "replay requests against a running server; prints one JSON line");
  bench_serve->add_option("--url", load_options.url, "the server");
  bench_serve->add_option("--requests", load_options.requests, "requests to send")->check(CLI::PositiveNumber);
  bench_serve->add_option("--rate", load_options.rate, "requests started per second (Poisson); 0: all at once")
      ->check(CLI::NonNegativeNumber);
  bench_serve->add_option("--concurrency", load_options.concurrency, "requests in flight at most")
      ->check(CLI::PositiveNumber);
  bench_serve->add_option("--prompt-min", load_options.prompt_min, "shortest prompt (tokens)")
      ->check(CLI::PositiveNumber);
  bench_serve->add_option("--prompt-max", load_options.prompt_max, "longest prompt (tokens)")
      ->check(CLI::PositiveNumber);
  bench_serve->add_option("--output-min", load_options.output_min, "fewest new tokens")->check(CLI::PositiveNumber);
  bench_serve->add_option("--output-max", load_options.output_max, "most new tokens")->check(CLI::PositiveNumber);
  bench_serve->add_option("--vocab", load_options.vocab, "prompt token ids are drawn below this")
      ->check(CLI::PositiveNumber);
  bench_serve->add_option("--seed", load_options.seed, "seed of the request mix");

  cr::ExportOptions export_options;
  auto* export_command = app.add_subcommand("export", "write a checkpoint as a Hugging Face model directory");
  export_command->add_option("--checkpoint", export_options.checkpoint, "checkpoint directory (or a checkpoint root)")
      ->required();
  export_command->add_option("--to", export_options.to, "target format")->required()->check(CLI::IsMember({"hf"}));
  export_command->add_option("--out", export_options.out_dir, "output directory")->required();
  export_command->add_option_function<std::string>(
      "--tokenizer-dir", [&](const std::string& dir) { export_options.tokenizer_dir = dir; },
      "tokenizer files to copy alongside");
  export_command->add_option("--dtype", export_options.dtype, "stored dtype")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  export_command->add_option("--max-shard-size", export_options.max_shard_size, "e.g. 5GB, 500MiB");

  cr::ReportOptions report_options;
  auto* report =
      app.add_subcommand("report", "draw runs' metrics (loss, learning rate, tokens/s, memory) as one HTML page");
  report->add_option("run_dirs", report_options.run_dirs, "run directories (runtime.run_dir), overlaid")
      ->required()
      ->check(CLI::ExistingDirectory);
  report->add_option("-o,--output", report_options.output, "the page to write")->capture_default_str();

  cr::ConvertConfigOptions convert_options;
  auto* convert = app.add_subcommand(
      "convert-config", "translate a DeepSpeed JSON or Colossal-AI legacy config into ours (docs/colossal-ai.md)");
  convert->add_option("file", convert_options.input, "a DeepSpeed .json or Colossal-AI .py config")
      ->required()
      ->check(CLI::ExistingFile);
  convert->add_option("-o,--output", convert_options.output, "where to write the YAML (default: stdout)");

  auto* presets = app.add_subcommand("presets", "list the model zoo's presets with their sizes");
  auto* help = app.add_subcommand("help", "show this help (`colossal-run COMMAND --help` for a command's options)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*help) {
    std::printf("%s", app.get_formatter()->make_help(&app, "colossal-run", CLI::AppFormatMode::Normal).c_str());
    return 0;
  }
  try {
    if (*presets) return cr::run_presets_command();
    if (*report) return cr::run_report_command(report_options);
    if (*convert) return cr::run_convert_config_command(convert_options);
    if (*bench_serve) return cr::run_bench_serve_command(load_options);
    if (*plan) {
      if (!plan_device_memory.empty()) {
        plan_report_options.device_memory = cr::parse_byte_size(plan_device_memory, "plan --device-memory");
      }
      return cr::run_plan_command(plan_options, plan_report_options);
    }
    if (*prepare) return cr::run_prepare_command(prepare_options);
    if (*export_command) return cr::run_export_command(export_options);
    const cr::LaunchEnvironment launch = cr::detect_launch_environment(cr::process_environment());
    if (nprocs == 1 && !launch.warning.empty()) cr::warn0_line(launch.warning);
    if (cr::needs_mpirun(launch, nprocs)) {
      // Validate once here, so that a bad config or layout gives one message rather than one per
      // rank; notes wait for rank 0.
      if (*eval || *generate || *serve) {
        const auto& options = *eval ? eval_options.config : *generate ? generate_options.config : serve_options.config;
        cr::check_inference_layout(cr::load_command_config(options, /*announce=*/false), nprocs);
      } else if (!*bench) {
        cr::check_job_layout(cr::load_command_config(train_options, /*announce=*/false), nprocs);
      }
      setenv(cr::kStdoutIsTerminalVariable, isatty(STDOUT_FILENO) ? "1" : "0", 1);
      return cr::relaunch_under_mpirun(std::vector<std::string>(argv + 1, argv + argc), nprocs,
                                       cr::available_cores(), hostfile);
    }
    if (*bench) return cr::run_bench_command(bench_options, launch);
    if (*eval) return cr::run_eval_command(eval_options, launch);
    if (*generate) return cr::run_generate_command(generate_options, launch);
    if (*serve) return cr::run_serve_command(serve_options, launch);
    return cr::run_train_command(train_options, launch);
  } catch (const std::exception& e) {
    cr::error_line(cr::describe_exception(e));
  }
  // In a multi-rank job the other ranks would wait for this one: end them all.
  cr::abort_job_if_distributed(1);
  return 1;
}
