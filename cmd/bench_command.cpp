// `colossal-run bench`: training throughput of a model preset on synthetic data, as one JSON
// line. MFU is measured against --peak-flops when given, else a known GPU's datasheet peak, else
// the dense GEMM rate of the same dtype on the same machine in the same run (mfu_peak_flops).
#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/job.h"
#include "core/config/config.h"
#include "core/base/log.h"
#include "core/plan/plan.h"
#include "core/train/host_tensor_bytes.h"
#include "core/train/model_factory.h"
#include "core/train/pipeline_stage.h"
#include "core/train/runtime.h"
#include "core/train/trainer.h"
#include "models/model_spec.h"

namespace cr {
namespace {

double value_of(double value) { return value; }
double value_of(const std::optional<double>& value) { return value.value_or(0.0); }

}  // namespace

int run_bench_command(const BenchOptions& options, const LaunchEnvironment& launch) {
  set_info_to_stderr(true);
  announce_launch_rank(launch);
  Config config;
  config.source = "bench";
  config.model.preset = options.preset;
  if (options.layers > 0) config.model.n_layer = options.layers;
  config.data.format = "synthetic";
  config.data.seq_len = options.seq_len;
  config.data.val_fraction = 0.0;
  config.train.micro_batch_size = options.micro_batch_size;
  config.train.steps = options.warmup_steps + options.steps;
  config.train.eval_every = 0;
  config.train.log_every = config.train.steps;
  config.lr_schedule.warmup_steps = 0;
  config.lr_schedule.min_lr = 0.0;
  config.precision.dtype = options.dtype;
  config.zero.stage = options.zero_stage;
  config.parallel.tensor = {options.tensor, options.tensor_mode, options.tensor_depth};
  config.parallel.sequence.mode = options.sequence;
  config.parallel.pipeline = {options.pipeline, options.schedule, options.microbatches, {}, options.chunks};
  config.train.activation_checkpointing = options.activation_checkpointing;
  config.checkpoint.resume = "none";
  config.checkpoint.save_final = false;
  config.runtime.device = options.device;
  config.runtime.threads = options.threads;
  config.runtime.progress_bar = false;
  config.train.time_breakdown = true;
  config.train.peak_flops = options.peak_flops;
  const auto run_dir = std::filesystem::temp_directory_path() / ("colossal-run-bench-" + std::to_string(getpid()));
  config.runtime.run_dir = run_dir.string();
  if (!options.sets.empty()) config = load_config_text(dump_config(config), "bench", options.sets);

  // Before any tensor of the run exists, so that every one is counted.
  HostTensorBytes::Scope tensor_bytes;
  JobMembership job(launch, config);
  const TrainSummary summary = job.train(config);
  if (log_rank() != 0) return 0;
  std::filesystem::remove_all(run_dir);

  // Medians over the measured steps, of the step time and of each phase of it.
  auto median_of = [&](auto StepMetrics::*field) {
    std::vector<double> values;
    for (size_t i = options.warmup_steps; i < summary.steps.size(); ++i) values.push_back(value_of(summary.steps[i].*field));
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  };
  auto max_of = [&](std::optional<int64_t> StepMetrics::*field) {
    int64_t most = 0;
    for (size_t i = options.warmup_steps; i < summary.steps.size(); ++i) {
      most = std::max(most, (summary.steps[i].*field).value_or(0));
    }
    return most;
  };
  const double median = median_of(&StepMetrics::step_time_s);
  const size_t measured_steps = summary.steps.size() - options.warmup_steps;
  const ModelSpec spec = model_spec_from_config(config.model);
  const int ranks = static_cast<int>(summary.data_parallel_size);
  const int world = ranks * static_cast<int>(options.tensor * options.pipeline);
  const double tokens = static_cast<double>(options.micro_batch_size * options.microbatches * ranks * options.seq_len);
  const double flops = flops_per_token(spec, options.seq_len) * tokens / median;
  const auto& last = summary.steps.back();
  // Rank 0 holds the largest shard; plan predicts that rank.
  const MemoryEstimate planned = estimate_memory(spec, config, ranks);
  const int64_t measured_peak = last.peak_device_bytes > 0 ? last.peak_device_bytes : last.peak_host_bytes;
  auto bytes_json = [](const StateBytes& b) {
    return nlohmann::json{{"parameters", b.parameters},
                          {"master_weights", b.master_weights},
                          {"gradients", b.gradients},
                          {"optimizer_states", b.optimizer_states},
                          {"total", b.total()}};
  };
  nlohmann::json result = {
      {"benchmark", "train-" + options.preset},
      {"dtype", options.dtype},
      {"device", resolve_device(config.runtime).str()},
      {"ranks", world},
      {"data_parallel", ranks},
      {"tensor_parallel", options.tensor},
      {"tensor_mode", options.tensor_mode},
      {"sequence_parallel", options.sequence},
      {"threads", at::get_num_threads()},
      {"parameters", summary.parameters},
      {"seq_len", options.seq_len},
      {"micro_batch_size", options.micro_batch_size},
      {"global_batch_size", options.micro_batch_size * options.microbatches * ranks},
      {"gradient_bytes", summary.parameters * 4},
      {"zero_stage", options.zero_stage},
      {"gradient_bytes_sent_per_rank", summary.gradients.bytes_sent_per_step},
      {"planned_tensor_bytes_sent_per_rank", layer_traffic(spec, config, ranks).total()},
      {"bytes_sent_per_rank", last.bytes_sent},
      {"measured_steps", measured_steps},
      {"step_time_s", median},
      {"tokens_per_s", tokens / median},
      {"achieved_flops", flops},
      {"peak_flops", summary.peak_flops},
      {"peak_flops_source", summary.peak_flops_source},
      {"mfu", flops / (summary.peak_flops * world)},
      {"time_breakdown_s",
       {{"forward", median_of(&StepMetrics::forward_s)},
        {"backward", median_of(&StepMetrics::backward_s)},
        {"communication_not_hidden", median_of(&StepMetrics::communication_s)},
        {"optimizer", median_of(&StepMetrics::optimizer_s)},
        {"other", median_of(&StepMetrics::other_s)}}},
      {"startup_s", summary.startup_s},
      {"startup_peak_host_bytes", summary.startup_peak_host_bytes},
      {"peak_host_bytes", last.peak_host_bytes},
      {"planned_activation_bytes", planned.activations},
      {"planned_transient_bytes", planned.transients},
      {"planned_process_bytes", planned.process},
      {"planned_peak_bytes", planned.total()},
      {"peak_over_plan", static_cast<double>(measured_peak) / static_cast<double>(planned.total())},
      {"peak_device_bytes", last.peak_device_bytes},
      {"state_bytes", bytes_json(last.state)},
      {"planned_state_bytes", bytes_json(planned)},
      {"state_over_plan", static_cast<double>(last.state.total()) / static_cast<double>(planned.StateBytes::total())},
      {"final_loss", summary.losses.back()},
      {"activation_checkpointing", options.activation_checkpointing},
      // What the steps added to the host memory at start: activations and what lives only during a step.
      {"step_host_bytes", last.peak_host_bytes - summary.steps_start_host_bytes},
      {"step_tensor_bytes", max_of(&StepMetrics::step_tensor_bytes)},
  };
  if (last.tiers.tiered) {
    // Over the measured steps: device / host copy time, and the share of it behind compute.
    TransferTimes copies;
    for (size_t i = options.warmup_steps; i < summary.steps.size(); ++i) {
      copies.seconds += summary.steps[i].tiers.copies.seconds;
      copies.exposed += summary.steps[i].tiers.copies.exposed;
    }
    result["placement_policy"] = config.zero.placement_policy.value_or("");
    result["tiers"] = {{"device_budget", last.tiers.device_budget},
                       {"device_peak", last.tiers.device_peak},
                       {"host_peak", last.tiers.host_peak},
                       {"host_to_device_per_step", last.tiers.host_to_device},
                       {"device_to_host_per_step", last.tiers.device_to_host},
                       {"nvme_bytes", last.tiers.nvme_bytes},
                       {"nvme_read_per_step", last.tiers.nvme_read},
                       {"nvme_written_per_step", last.tiers.nvme_written},
                       {"prefetched_per_step", last.tiers.prefetched},
                       {"transfer_s_per_step", copies.seconds / static_cast<double>(measured_steps)},
                       {"exposed_transfer_s_per_step", copies.exposed / static_cast<double>(measured_steps)},
                       {"hidden_transfer_share", copies.hidden_share()}};
  }
  if (options.pipeline > 1) {
    // At the artificial stage costs when set (the model's own are then negligible), else 1 and 2.
    ComputeCosts costs;
    if (const auto artificial = artificial_stage_cost()) {
      costs = {artificial->forward_s, artificial->backward_s, artificial->backward_s / 2, artificial->backward_s / 2};
    }
    const PipelineTimeline planned = pipeline_timeline(parse_pipeline_schedule(options.schedule), options.pipeline,
                                                       options.microbatches, options.chunks, costs);
    std::vector<int64_t> stage_tensor_bytes(static_cast<size_t>(options.pipeline), 0);
    for (size_t i = options.warmup_steps; i < summary.steps.size(); ++i) {
      const auto& stages = summary.steps[i].stage_tensor_bytes;
      for (size_t s = 0; s < stages.size(); ++s) stage_tensor_bytes[s] = std::max(stage_tensor_bytes[s], stages[s]);
    }
    std::vector<double> planned_stages;
    for (const StageActivations& stage : stage_activations(spec, config, planned, options.chunks)) {
      planned_stages.push_back(stage.bytes);
    }
    result["pipeline"] = {{"stages", options.pipeline},
                          {"schedule", options.schedule},
                          {"micro_batches", options.microbatches},
                          {"chunks", options.chunks},
                          {"measured_bubble", median_of(&StepMetrics::pipeline_bubble)},
                          {"planned_bubble", planned.bubble_ratio()},
                          {"stage_tensor_bytes", stage_tensor_bytes},
                          {"planned_stage_activation_bytes", planned_stages}};
  }
  std::printf("%s\n", result.dump().c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace cr
