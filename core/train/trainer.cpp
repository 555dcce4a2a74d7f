#include "core/train/trainer.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/ranges.h>

#include "core/base/crc32.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/strings.h"
#include "core/data/dataset.h"
#include "core/train/hf_import.h"
#include "core/train/host_tensor_bytes.h"
#include "core/train/lr_schedule.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "core/train/rank_agreement.h"
#include "core/train/resume_changes.h"
#include "core/train/run_directory.h"
#include "core/train/runtime.h"
#include "core/train/schedule.h"
#include "core/train/stage_executor.h"
#include "core/train/train_checkpoint.h"
#include "memory/flat_parameters.h"
#include "memory/loss_scaler.h"
#include "memory/strategy_factory.h"
#include "parallel/communicator.h"
#include "parallel/parallel_context.h"

namespace cr {
namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void request_stop(int signal) {
  g_stop_signal = signal;
  std::signal(signal, SIG_DFL);  // a second Ctrl-C ends the process at once
}

// Stops at the next step boundary (after saving a checkpoint) on the first SIGINT / SIGTERM, or
// SIGUSR1: what the --nprocs launcher sends through mpirun, which would kill ranks on the others.
class StopSignalScope {
 public:
  StopSignalScope() {
    g_stop_signal = 0;
    for (size_t i = 0; i < kSignals.size(); ++i) previous_[i] = std::signal(kSignals[i], request_stop);
  }
  ~StopSignalScope() {
    for (size_t i = 0; i < kSignals.size(); ++i) std::signal(kSignals[i], previous_[i]);
  }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGUSR1};
  std::array<void (*)(int), 3> previous_{};
};

std::string signal_name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT (Ctrl-C)";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "a stop request (SIGUSR1)";
    default: return fmt::format("signal {}", signal);
  }
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Test hook for fault handling: "RANK:STEP" makes that rank throw at the start of that step,
// "RANK:STEP:kill" kills it outright (SIGKILL), as an out-of-memory killer would.
void maybe_inject_failure(int rank, int64_t step) {
  const char* spec = std::getenv("COLOSSAL_RUN_FAIL_RANK_AT_STEP");
  if (!spec) return;
  int fail_rank = -1;
  long long fail_step = -1;
  char mode[8] = "";
  const int fields = std::sscanf(spec, "%d:%lld:%7s", &fail_rank, &fail_step, mode);
  if (fields < 2 || fail_rank != rank || fail_step != step) return;
  if (fields == 3 && std::string(mode) == "kill") std::raise(SIGKILL);
  fail("injected failure at step {} (COLOSSAL_RUN_FAIL_RANK_AT_STEP={})", step, spec);
}

// Test hook for fp16 loss scaling: "RANK:STEP" puts an infinity into that rank's gradient at that step.
bool inject_infinite_gradient(int rank, int64_t step) {
  const char* spec = std::getenv("COLOSSAL_RUN_INF_GRAD_AT_STEP");
  if (!spec) return false;
  int inf_rank = -1;
  long long inf_step = -1;
  return std::sscanf(spec, "%d:%lld", &inf_rank, &inf_step) == 2 && inf_rank == rank && inf_step == step;
}

// Wall time of one phase of a step, added to `total` when the scope ends. On a GPU the phase's
// kernels are waited for only when asked (train.time_breakdown), since that costs overlap.
class PhaseTimer {
 public:
  PhaseTimer(double& total, const torch::Device& device, bool synchronize)
      : total_(total), device_(device), synchronize_(synchronize && device.is_cuda()), start_(Clock::now()) {}
  ~PhaseTimer() {
    if (synchronize_) torch::cuda::synchronize(device_.index());
    total_ += seconds_since(start_);
  }

 private:
  double& total_;
  torch::Device device_;
  bool synchronize_;
  Clock::time_point start_;
};

class Trainer {
 public:
  Trainer(const Config& config, const ParallelContext& context);
  TrainSummary run();

 private:
  void run_steps(MetricsFile& metrics, ProgressReporter& progress);
  void run_schedule(int64_t step, StepMetrics& m);
  // Clips, unscales and applies the step's gradients, unless they overflowed; fills m.
  void apply_gradients(int64_t step, StepMetrics& m);
  double evaluate();
  double mean_over_replicas(double value);
  int max_over_ranks(int value);
  RunTotals run_totals() const;
  torch::Tensor batch_tensor(const std::vector<int64_t>& values) const;
  void save(int64_t steps_done);

  Config config_;
  const ParallelContext& context_;
  Communicator* replicas_;  // data (x sequence) group, host side: loss averages
  int dp_rank_ = 0;
  int dp_size_ = 1;
  ModelSpec spec_;
  torch::Device device_;
  torch::ScalarType dtype_;
  int64_t global_batch_ = 0;
  int64_t rank_batch_ = 0;  // this rank's share of the global batch
  int64_t accumulation_ = 0;
  StageLayout stage_;                 // this rank's part of the model
  std::vector<Instruction> program_;  // one step, from the schedule generator
  size_t reducing_backward_ = 0;      // program_'s backward that completes the gradients
  DataSplits data_;
  std::optional<BatchSampler> train_sampler_, val_sampler_;
  CausalLM model_;
  std::unique_ptr<ParameterStrategy> strategy_;
  std::unique_ptr<StageExecutor> executor_;
  std::optional<DynamicLossScaler> loss_scaler_;  // fp16
  TrainSummary summary_;
  int64_t start_step_ = 0;
  std::string run_;  // names this run's checkpoints, so that pruning keeps to them
  Clock::time_point started_ = Clock::now();
};

Trainer::Trainer(const Config& config, const ParallelContext& context)
    : config_(config),
      context_(context),
      replicas_(context.host_group(Axis::DataSequence)),
      device_(resolve_device(config.runtime)),
      dtype_(compute_dtype(config.precision)) {
  spec_ = model_spec_from_config(config_.model);
  const ProcessMesh& mesh = context_.mesh();
  // Sequence ranks (all_to_all, ring_attn) share their data rank's batch; gradients and losses are averaged
  // over data x sequence (replicas_, the strategy's group).
  dp_rank_ = context_.rank(Axis::Data);
  dp_size_ = context_.size(Axis::Data);
  const int threads = configure_threads(config_.runtime, ranks_on_this_node());
  if (config_.data.seq_len > spec_.max_seq_len) {
    fail("data.seq_len {} exceeds the model's max_seq_len {} (set model.max_seq_len)", config_.data.seq_len,
         spec_.max_seq_len);
  }
  check_sequence_split(config_, mesh.shape().tensor);
  const int64_t micro = config_.train.micro_batch_size;
  const BatchLayout batch = batch_layout(config_.train, config_.parallel.pipeline, dp_size_);
  global_batch_ = batch.global;
  rank_batch_ = batch.per_rank;
  accumulation_ = batch.accumulation;
  stage_ = stage_layout_for(config_, spec_, mesh.shape().pipeline, context_.rank(Axis::Pipeline));
  program_ = step_program(config_, stage_, context_.rank(Axis::Pipeline), accumulation_);
  reducing_backward_ = reducing_backward(program_);

  const auto resume_dir = checkpoint_to_resume(config_.checkpoint, checkpoint_root(config_));
  if (context_.world_rank() == 0) prepare_run_directories(config_, resume_dir.has_value());
  std::optional<OpenedCheckpoint> resumed;
  if (resume_dir) {
    resumed = open_train_checkpoint(*resume_dir);
    start_step_ = resumed->state.position.step;
    run_ = resumed->state.run;
    if (const auto recorded = recorded_config(*resume_dir)) {
      const auto changes = resume_config_changes(*recorded, config_, *resume_dir);
      if (!changes.empty()) print0("resuming with a changed config: {}", fmt::join(changes, "; "));
    }
  }
  if (run_.empty()) run_ = new_run_id();
  if (context_.world_rank() == 0) {
    set_log_file((std::filesystem::path(config_.runtime.run_dir) / "train.log").string());
    print0("run {} in {}, {} at step {}", run_, config_.runtime.run_dir,
           resume_dir ? "resuming from " + *resume_dir : std::string("starting fresh"), start_step_);
  }
  if (const std::string note = derived_dimensions_note(config_.model); !note.empty()) print0("note: {}", note);
  if (const std::string warning = schedule_warning(config_.lr_schedule, config_.train.steps); !warning.empty()) {
    warn0_line(warning);
  }
  // What is trained must agree; how each process runs (runtime.*: its run directory, threads,
  // progress bar) may differ between ranks.
  Config trained = config_;
  trained.runtime = RuntimeConfig{};
  check_ranks_agree(context_.control(), {dump_config(trained), resume_dir, start_step_});

  data_ = open_data(config_.data, spec_.vocab_size, static_cast<uint64_t>(config_.train.seed));
  train_sampler_.emplace(data_.train, static_cast<uint64_t>(config_.train.seed), /*shuffle=*/true);
  if (data_.val) val_sampler_.emplace(data_.val, static_cast<uint64_t>(config_.train.seed), /*shuffle=*/false);

  // The model's parameters have no storage until the strategy gives each rank what it keeps,
  // taken from the source: the initialisation (a pure function of seed, name and element), the
  // weights of model.init_from, or nothing when a checkpoint is loaded next.
  const TensorParallel tp = make_tensor_parallel(context_.device_group(Axis::Tensor), spec_,
                                                 config_.parallel.sequence.mode == "split_gather",
                                                 context_.device_group(Axis::Sequence),
                                                 config_.parallel.sequence.mode == "ring_attn",
                                                 tensor_grid_of(config_.parallel));
  model_ = build_model_skeleton(spec_, tp);
  summary_.data_parallel_size = dp_size_;
  {
    const ModuleParameters params = module_parameters(*model_, model_->blocks(), owned_by_stage(*model_, stage_));
    std::unique_ptr<WeightSource> source;
    if (!resumed && config_.model.init_from) {
      source = open_init_weights(*config_.model.init_from, params.entries, spec_);
      print0("initialised weights from {}", *config_.model.init_from);
    } else if (!resumed) {
      source = std::make_unique<InitialWeights>(parameter_init_rules(*model_), static_cast<uint64_t>(config_.train.seed));
    }
    strategy_ = make_parameter_strategy(config_, params, source.get(), spec_.n_layer, device_, dtype_,
                                        context_.device_group(Axis::DataSequence),
                                        context_.host_group(Axis::PipelineTensor));
  }
  executor_ = std::make_unique<StageExecutor>(*model_, *strategy_, stage_, context_.pipeline_links(),
                                              context_.host_group(Axis::Pipeline), device_, dtype_, accumulation_,
                                              micro, config_.data.seq_len, config_.train.activation_checkpointing);
  if (resumed) {
    const auto& position = resumed->state.position;
    if (position.samples_consumed != start_step_ * global_batch_) {
      fail("checkpoint {}: it consumed {} samples in {} steps, which does not match train.global_batch_size {}",
           *resume_dir, position.samples_consumed, position.step, global_batch_);
    }
    // Each rank reads only the slices it holds, whatever layout wrote them.
    const auto loading = Clock::now();
    strategy_->load_checkpoint(*resumed->reader, resumed->state.optimizer_steps);
    summary_.checkpoint_load_s = seconds_since(loading);
    print0("resumed from {} at step {} (rank 0 read {} in {:.2f} s)", *resume_dir, start_step_,
           fmt::join(resumed->reader->files_read(), ", "), summary_.checkpoint_load_s);
  }
  summary_.first_step = start_step_;
  summary_.parameters = parameter_count(spec_);
  summary_.optimizer_state_bytes = strategy_->state_bytes().optimizer_states;
  if (dtype_ == torch::kHalf) {
    loss_scaler_.emplace(config_.precision);
    if (resumed && resumed->state.loss_scale) loss_scaler_->set_state(*resumed->state.loss_scale);
  }
  summary_.gradients = strategy_->gradient_traffic();
  resumed.reset();

  const PeakFlops peak = mfu_peak_flops(config_.train.peak_flops, dtype_, device_);
  summary_.peak_flops = peak.flops;
  summary_.peak_flops_source = peak.source;
  summary_.startup_s = seconds_since(started_);
  summary_.startup_peak_host_bytes = peak_rss_bytes();
  reset_peak_rss();  // the steps' peak, reported per step, is measured apart from start-up's
  summary_.steps_start_host_bytes = peak_rss_bytes();
  print0("data: {}", data_.description);
  print0("model {} ({} parameters, {}) | {} ranks x {} threads on {} | global batch {} = {} ranks x {} x {} "
         "micro-batches | peak {:.1f} GFLOP/s per rank",
         config_.model.preset.value_or(spec_.arch), with_thousands(summary_.parameters), config_.precision.dtype,
         context_.world_size(), threads, device_.str(), global_batch_, dp_size_, accumulation_, micro,
         summary_.peak_flops / 1e9);
  if (tp.grid) {
    const TensorGridShape& grid = tp.grid->shape;
    print0("tensor parallel {} ({}: {} x {} x {} grid): {} parameters per rank, {} of {} sequences and {} of {} "
           "hidden units per micro-batch", tp.size, tensor_mode_name(grid.mode), grid.depth, grid.q, grid.q,
           with_thousands(strategy_->numel()), micro / grid.batch_parts(), micro, spec_.d_model / grid.q,
           spec_.d_model);
  } else if (tp.split()) {
    print0("tensor parallel {} (1d{}): {} parameters per rank", tp.size,
           tp.sequence_parallel ? ", sequence split_gather" : "", with_thousands(strategy_->numel()));
  }
  if (tp.ulysses()) {
    print0("sequence parallel all_to_all {}: {} tokens per rank, attention on {} of {} heads", tp.sequence_size,
           config_.data.seq_len / tp.sequence_size, spec_.n_head / tp.size / tp.sequence_size, spec_.n_head);
  }
  if (stage_.stages > 1) {
    const PipelineConfig& pipeline = config_.parallel.pipeline;
    std::vector<std::string> blocks;
    for (const StageChunk& chunk : stage_.chunks) blocks.push_back(fmt::format("{}-{}", chunk.first_block, chunk.last_block - 1));
    print0("pipeline {} stages, {}{} over {} micro-batches: rank 0 runs blocks {}, {} parameters", stage_.stages,
           pipeline.schedule, stage_.virtual_stages > stage_.stages ? fmt::format(" (V={})", pipeline.chunks) : "",
           accumulation_, fmt::join(blocks, ", "), with_thousands(strategy_->numel()));
  }
  if (tp.ring_attention()) {
    print0("sequence parallel ring_attn {}: {} tokens per rank (two zigzag parts), key/value blocks around the ring",
           tp.sequence_size, config_.data.seq_len / tp.sequence_size);
  }
}

torch::Tensor Trainer::batch_tensor(const std::vector<int64_t>& values) const {
  auto tensor = torch::from_blob(const_cast<int64_t*>(values.data()),
                                 {config_.train.micro_batch_size, config_.data.seq_len}, torch::kLong);
  return tensor.to(device_, /*non_blocking=*/false, /*copy=*/true);
}

void Trainer::run_schedule(int64_t step, StepMetrics& m) {
  const int64_t rows = config_.train.micro_batch_size;
  const int64_t first_sample = step * global_batch_ + dp_rank_ * rank_batch_;
  const bool sync = config_.train.time_breakdown;
  std::vector<int64_t> inputs(rows * config_.data.seq_len), targets(inputs.size());
  executor_->begin_step();
  for (size_t i = 0; i < program_.size(); ++i) {
    const Instruction& instruction = program_[i];
    switch (instruction.op) {
      case Op::LoadMicroBatch:
        train_sampler_->fill(first_sample + instruction.micro_batch * rows, rows, inputs.data(), targets.data());
        executor_->set_batch(instruction.micro_batch, batch_tensor(inputs), batch_tensor(targets));
        break;
      case Op::Forward: {
        PhaseTimer timer(m.forward_s, device_, sync);
        // Dropout masks depend only on (seed, step, rank, micro-batch, block): resumed runs and
        // other stage splits draw the same.
        executor_->forward(instruction, static_cast<uint64_t>(config_.train.seed) * 1000003u +
                                            (step * dp_size_ + dp_rank_) * accumulation_ + instruction.micro_batch);
        break;
      }
      case Op::Backward:
      case Op::BackwardInput: {
        PhaseTimer timer(m.backward_s, device_, sync);
        const double scale = loss_scaler_ ? loss_scaler_->scale() : 1.0;
        executor_->backward(instruction, i == reducing_backward_, scale / static_cast<double>(accumulation_));
        break;
      }
      case Op::BackwardWeight: {
        PhaseTimer timer(m.backward_s, device_, sync);
        executor_->backward_weights(instruction, i == reducing_backward_);
        break;
      }
      case Op::SendActivation: executor_->send_activation(instruction); break;
      case Op::RecvActivation: {
        PhaseTimer timer(m.communication_s, device_, sync);
        executor_->recv_activation(instruction);
        break;
      }
      case Op::SendGradient: executor_->send_gradient(instruction); break;
      case Op::RecvGradient: {
        PhaseTimer timer(m.communication_s, device_, sync);
        executor_->recv_gradient(instruction);
        break;
      }
      case Op::ReduceGradients: {
        PhaseTimer timer(m.communication_s, device_, sync);
        executor_->wait_for_sends();
        strategy_->reduce_gradients();
        break;
      }
      case Op::OptimizerStep: {
        // The losses meet the host once per step, not once per micro-batch.
        m.loss = mean_over_replicas(executor_->mean_loss());
        if (!std::isfinite(m.loss) && !loss_scaler_) {
          fail("loss is {} at step {}: training diverged (lower optimizer.lr?)", m.loss, m.step);
        }
        if (stage_.stages > 1) m.pipeline_bubble = executor_->measured_bubble();
        PhaseTimer timer(m.optimizer_s, device_, sync);
        apply_gradients(step, m);
        break;
      }
    }
  }
}

void Trainer::apply_gradients(int64_t step, StepMetrics& m) {
  if (inject_infinite_gradient(context_.world_rank(), m.step)) strategy_->poison_gradients();
  const double loss_scale = loss_scaler_ ? loss_scaler_->scale() : 1.0;
  m.grad_norm = strategy_->gradient_norm() / loss_scale;
  // Ranks must agree: an overflow on any of them skips the step on all.
  const bool overflow = max_over_ranks(std::isfinite(m.grad_norm) ? 0 : 1) != 0;
  m.lr = learning_rate(config_.lr_schedule, config_.optimizer.lr, step, config_.train.steps);
  if (loss_scaler_) {
    m.loss_scale = loss_scale;
    m.skipped = overflow;
    if (overflow) print0("step {}: gradients overflowed at loss scale {:g}; step skipped", m.step, loss_scale);
    if (loss_scaler_->update(overflow)) print0("step {}: loss scale {:g} -> {:g}", m.step, loss_scale, loss_scaler_->scale());
    if (overflow) return;
  } else if (overflow) {
    fail("gradient norm is {} at step {}: training diverged (lower optimizer.lr, or use precision.dtype fp32/bf16 "
         "rather than fp16 without loss scaling)", m.grad_norm, m.step);
  }
  const double clip_norm = config_.train.clip_grad_norm;
  const double clip = clip_norm > 0 && m.grad_norm > clip_norm ? clip_norm / (m.grad_norm + 1e-6) : 1.0;
  strategy_->optimizer_step(m.lr, clip / loss_scale);
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  strategy_->begin_step(/*training=*/false);
  executor_->begin_evaluation();
  const int64_t rows = config_.train.micro_batch_size;
  std::vector<int64_t> inputs(rows * config_.data.seq_len), targets(inputs.size());
  torch::Tensor sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  // Replicas split the evaluation batches between them; all run the same number of forwards
  // (the extra ones count zero), since a strategy may communicate inside every block.
  const int64_t batches = config_.train.eval_batches;
  const int64_t rounds = (batches + dp_size_ - 1) / dp_size_;
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t batch = round * dp_size_ + dp_rank_;
    val_sampler_->fill(std::min(batch, batches - 1) * rows, rows, inputs.data(), targets.data());
    const auto loss = executor_->forward_only(batch_tensor(inputs), batch_tensor(targets));
    if (batch < batches && loss.defined()) sum += loss.to(torch::kDouble);
  }
  strategy_->end_step();
  model_->train();
  return mean_over_replicas(executor_->from_last_stage(sum.item<double>()) * dp_size_) / static_cast<double>(batches);
}

double Trainer::mean_over_replicas(double value) {
  if (!replicas_) return value;
  auto t = torch::tensor({value}, torch::kDouble);
  replicas_->all_reduce(t, ReduceOp::Avg);
  return t.item<double>();
}

RunTotals Trainer::run_totals() const {
  RunTotals totals;
  totals.first_step = summary_.first_step;
  totals.last_step = summary_.steps.back().step;
  totals.wall_s = seconds_since(started_);
  double step_time = 0.0;
  for (const StepMetrics& m : summary_.steps) step_time += m.step_time_s;
  const double tokens = static_cast<double>(summary_.steps.size() * global_batch_ * config_.data.seq_len);
  totals.mean_tokens_per_s = step_time > 0 ? tokens / step_time : 0.0;
  totals.final_loss = summary_.steps.back().loss;
  for (const auto& [step, loss] : summary_.val_losses) {
    if (!totals.best_val_loss || loss < *totals.best_val_loss) totals.best_val_loss = loss;
  }
  return totals;
}

int Trainer::max_over_ranks(int value) {
  Communicator* control = context_.control();
  if (!control) return value;
  auto t = torch::tensor({value}, torch::kInt);
  control->all_reduce(t, ReduceOp::Max);
  return t.item<int>();
}

void Trainer::save(int64_t steps_done) {
  const auto saving = Clock::now();
  const auto root = checkpoint_root(config_);
  TrainState state{{steps_done, steps_done * global_batch_}, strategy_->optimizer_steps(), std::nullopt, run_};
  if (loss_scaler_) state.loss_scale = loss_scaler_->state();
  const CheckpointPart part = strategy_->checkpoint_part();
  summary_.checkpoint_bytes_written = 0;
  for (const auto& slice : part.slices) summary_.checkpoint_bytes_written += slice.elements() * 4;
  summary_.last_checkpoint =
      save_train_checkpoint(root, config_, state, part, summary_.parameters, config_.checkpoint.keep, context_);
  summary_.checkpoint_save_s = seconds_since(saving);
}

TrainSummary Trainer::run() {
  const auto& train = config_.train;
  MetricsFile metrics((std::filesystem::path(config_.runtime.run_dir) / "metrics.jsonl").string(), start_step_, run_,
                      config_.runtime.tensorboard);
  ProgressReporter progress(start_step_, train.steps, train.log_every, config_.runtime.progress_bar);
  if (!val_sampler_ && train.eval_every > 0) warn0("no validation data (data.val empty, data.val_fraction 0): evaluation is off");
  StopSignalScope stop_scope;

  try {
    run_steps(metrics, progress);
  } catch (const std::exception& e) {
    // Before gradient buckets still in flight are destroyed: their handles wait for peers.
    fail_job_if_distributed(e);
    throw;
  }
  progress.finish();
  if (!summary_.steps.empty()) {
    summary_.totals = run_totals();
    metrics.write_summary(summary_.totals);
  }
  summary_.parameters_crc32 = strategy_->weights_crc32();
  return summary_;
}

void Trainer::run_steps(MetricsFile& metrics, ProgressReporter& progress) {
  const auto& train = config_.train;
  const double flops_per_step = flops_per_token(spec_, config_.data.seq_len) * global_batch_ * config_.data.seq_len;
  for (int64_t step = start_step_; step < train.steps; ++step) {
    maybe_inject_failure(context_.world_rank(), step + 1);
    const auto start = Clock::now();
    StepMetrics m;
    m.step = step + 1;
    m.total_steps = train.steps;
    m.tokens_seen = m.step * global_batch_ * config_.data.seq_len;
    HostTensorBytes* tensors = HostTensorBytes::active();
    const int64_t tensors_at_start = tensors ? tensors->current() : 0;
    if (tensors) tensors->reset_peak();
    const int64_t sent_at_start = bytes_sent_by_process();
    strategy_->begin_step(/*training=*/true);
    run_schedule(step, m);
    strategy_->end_step();
    m.bytes_sent = bytes_sent_by_process() - sent_at_start;
    if (tensors) {
      m.step_tensor_bytes = tensors->peak() - tensors_at_start;
      if (stage_.stages > 1) {
        for (const double bytes : executor_->from_every_stage({static_cast<double>(*m.step_tensor_bytes)})) {
          m.stage_tensor_bytes.push_back(static_cast<int64_t>(bytes));
        }
      }
    }
    m.step_time_s = seconds_since(start);
    m.other_s = std::max(0.0, m.step_time_s - m.forward_s - m.backward_s - m.communication_s - m.optimizer_s);
    m.tokens_per_s = static_cast<double>(global_batch_ * config_.data.seq_len) / m.step_time_s;
    m.flops_per_s = flops_per_step / m.step_time_s;
    m.mfu = m.flops_per_s / (summary_.peak_flops * context_.world_size());
    m.peak_host_bytes = peak_rss_bytes();
    m.peak_device_bytes = peak_device_bytes(device_);
    m.state = strategy_->state_bytes();
    m.tiers = strategy_->tier_usage();
    summary_.gradients = strategy_->gradient_traffic();
    metrics.write_step(m);
    progress.on_step(m);
    summary_.losses.push_back(m.loss);
    summary_.steps.push_back(m);

    const bool last = m.step == train.steps;
    if (val_sampler_ && train.eval_every > 0 && (m.step % train.eval_every == 0 || last)) {
      const double val_loss = evaluate();
      summary_.val_losses.emplace_back(m.step, val_loss);
      metrics.write_eval(m.step, val_loss);
      progress.print(fmt::format("step {}/{} | val_loss {:.4f}", m.step, train.steps, val_loss));
    }
    const bool periodic = config_.checkpoint.every > 0 && m.step % config_.checkpoint.every == 0;
    // Ranks must agree on stopping at the same step, whichever of them saw the signal.
    const int stop_signal = max_over_ranks(g_stop_signal.load());
    const bool stop = stop_signal != 0;
    if (periodic || (last && config_.checkpoint.save_final) || stop) {
      save(m.step);
      progress.print(fmt::format("checkpoint {}: rank 0 wrote {} in {:.2f} s", *summary_.last_checkpoint,
                                 human_bytes(static_cast<double>(summary_.checkpoint_bytes_written)),
                                 summary_.checkpoint_save_s));
    }
    if (stop) {
      summary_.interrupted = true;
      progress.print(fmt::format("stopped by {} after step {}; checkpoint {}", signal_name(stop_signal), m.step,
                                 summary_.last_checkpoint.value_or("-")));
      break;
    }
  }
}

}  // namespace

TrainSummary run_training(const Config& config, const ParallelContext& context) {
  try {
    return Trainer(config, context).run();
  } catch (const std::exception& e) {
    fail_job_if_distributed(e);
    throw;
  }
}

TrainSummary run_training(const Config& config, Communicator* world) {
  const int world_size = world ? world->size() : 1;
  const ParallelContext context(mesh_for(config.parallel, model_spec_from_config(config.model), world_size), world);
  return run_training(config, context);
}

}  // namespace cr
