#include "core/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/adamw_optimizer.h"
#include "core/checkpoint_store.h"
#include "core/dataset.h"
#include "core/error.h"
#include "core/hf_import.h"
#include "core/log.h"
#include "core/lr_schedule.h"
#include "core/mesh_layout.h"
#include "core/model_factory.h"
#include "core/runtime.h"
#include "core/strings.h"
#include "core/crc32.h"
#include "core/train_checkpoint.h"
#include "memory/flat_parameters.h"
#include "memory/gradient_sync.h"
#include "parallel/communicator.h"

namespace cr {
namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void request_stop(int signal) {
  g_stop_signal = signal;
  std::signal(signal, SIG_DFL);  // a second Ctrl-C ends the process at once
}

// Stops at the next step boundary (after saving a checkpoint) on the first SIGINT / SIGTERM.
class StopSignalScope {
 public:
  StopSignalScope() {
    g_stop_signal = 0;
    previous_int_ = std::signal(SIGINT, request_stop);
    previous_term_ = std::signal(SIGTERM, request_stop);
  }
  ~StopSignalScope() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

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

class Trainer {
 public:
  Trainer(const Config& config, Communicator* world, Communicator* device_group);
  TrainSummary run();

 private:
  void run_steps(MetricsFile& metrics, ProgressReporter& progress);
  double train_step(int64_t step);
  double evaluate();
  double mean_over_ranks(double value);
  bool any_rank(bool flag);
  torch::Tensor batch_tensor(const std::vector<int64_t>& values) const;
  std::string checkpoint_root() const;
  void save(int64_t steps_done);
  FullOptimizerState full_optimizer_state();

  Config config_;
  Communicator* world_;         // null: a single process
  Communicator* tensor_group_;  // parameters and gradients: world_, or its NCCL twin on GPUs
  int dp_rank_ = 0;
  int dp_size_ = 1;
  ModelSpec spec_;
  torch::Device device_;
  torch::ScalarType dtype_;
  int64_t global_batch_ = 0;
  int64_t rank_batch_ = 0;  // this rank's share of the global batch
  int64_t accumulation_ = 0;
  DataSplits data_;
  std::optional<BatchSampler> train_sampler_, val_sampler_;
  CausalLM model_;
  std::unique_ptr<FlatParameters> params_;
  std::unique_ptr<AdamWOptimizer> optimizer_;
  std::unique_ptr<GradientSynchronizer> gradient_sync_;
  TrainSummary summary_;
  int64_t start_step_ = 0;
};

Trainer::Trainer(const Config& config, Communicator* world, Communicator* device_group)
    : config_(config),
      world_(world),
      tensor_group_(device_group ? device_group : world),
      device_(resolve_device(config.runtime)),
      dtype_(compute_dtype(config.precision)) {
  spec_ = model_spec_from_config(config_.model);
  const ProcessMesh mesh = mesh_for(config_.parallel, spec_, world_ ? world_->size() : 1);
  if (mesh.shape().tensor > 1 || mesh.shape().pipeline > 1) {
    fail("parallel.tensor {} x parallel.pipeline {}: this build trains data parallel only; `plan` shows the "
         "layout, training needs both at 1", mesh.shape().tensor, mesh.shape().pipeline);
  }
  if (world_) {
    dp_rank_ = world_->rank();
    dp_size_ = world_->size();
  }
  const int threads = configure_threads(config_.runtime, ranks_on_this_node());
  if (config_.data.seq_len > spec_.max_seq_len) {
    fail("data.seq_len {} exceeds the model's max_seq_len {} (set model.max_seq_len)", config_.data.seq_len,
         spec_.max_seq_len);
  }
  const int64_t micro = config_.train.micro_batch_size;
  const BatchLayout batch = batch_layout(config_.train, dp_size_);
  global_batch_ = batch.global;
  rank_batch_ = batch.per_rank;
  accumulation_ = batch.accumulation;

  data_ = open_data(config_.data, spec_.vocab_size, static_cast<uint64_t>(config_.train.seed));
  train_sampler_.emplace(data_.train, static_cast<uint64_t>(config_.train.seed), /*shuffle=*/true);
  if (data_.val) val_sampler_.emplace(data_.val, static_cast<uint64_t>(config_.train.seed), /*shuffle=*/false);

  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  model_ = build_model(spec_);
  model_->to(device_);
  params_ = std::make_unique<FlatParameters>(*model_, dtype_);
  std::optional<std::pair<int64_t, int64_t>> shard;
  if (config_.zero.stage >= 1 && dp_size_ > 1) shard = shard_range(params_->numel(), dp_rank_, dp_size_);
  optimizer_ = std::make_unique<AdamWOptimizer>(config_.optimizer, *params_, shard);
  summary_.parameters = params_->numel();
  summary_.optimizer_state_bytes = 2 * optimizer_->exp_avg().numel() * static_cast<int64_t>(sizeof(float));
  summary_.data_parallel_size = dp_size_;

  if (const auto resume_dir = checkpoint_to_resume(config_.checkpoint, checkpoint_root())) {
    const auto position = load_train_checkpoint(*resume_dir, *params_, optimizer_.get());
    start_step_ = position.step;
    if (position.samples_consumed != start_step_ * global_batch_) {
      fail("checkpoint {}: it consumed {} samples in {} steps, which does not match train.global_batch_size {}",
           *resume_dir, position.samples_consumed, position.step, global_batch_);
    }
    print0("resumed from {} at step {}", *resume_dir, start_step_);
  } else if (config_.model.init_from) {
    load_init_weights(*config_.model.init_from, *params_, spec_);
    print0("initialised weights from {}", *config_.model.init_from);
  }
  summary_.first_step = start_step_;
  if (dp_size_ > 1) {
    // Every rank starts from rank 0's weights, whatever initialised or loaded them.
    tensor_group_->broadcast(params_->master(), 0);
    params_->publish_master();
    const auto bucket_bytes = static_cast<int64_t>(config_.parallel.bucket_mb * 1024 * 1024);
    gradient_sync_ = std::make_unique<GradientSynchronizer>(*params_, *tensor_group_, bucket_bytes);
    summary_.gradient_bytes_sent_per_step = gradient_sync_->bytes_sent_per_step();
    summary_.gradient_buckets = gradient_sync_->bucket_count();
  }

  summary_.peak_flops = config_.train.peak_flops > 0 ? config_.train.peak_flops : measure_gemm_flops(dtype_, device_);
  print0("data: {}", data_.description);
  print0("model {} ({} parameters, {}) | {} ranks x {} threads on {} | global batch {} = {} ranks x {} x {} "
         "micro-batches | peak {:.1f} GFLOP/s per rank",
         config_.model.preset.value_or(spec_.arch), with_thousands(params_->numel()), config_.precision.dtype, dp_size_,
         threads, device_.str(), global_batch_, dp_size_, accumulation_, micro, summary_.peak_flops / 1e9);
}

std::string Trainer::checkpoint_root() const {
  return config_.checkpoint.dir.value_or((std::filesystem::path(config_.runtime.run_dir) / "checkpoints").string());
}

torch::Tensor Trainer::batch_tensor(const std::vector<int64_t>& values) const {
  auto tensor = torch::from_blob(const_cast<int64_t*>(values.data()),
                                 {config_.train.micro_batch_size, config_.data.seq_len}, torch::kLong);
  return tensor.to(device_, /*non_blocking=*/false, /*copy=*/true);
}

double Trainer::train_step(int64_t step) {
  const int64_t rows = config_.train.micro_batch_size;
  std::vector<int64_t> inputs(rows * config_.data.seq_len), targets(inputs.size());
  params_->zero_grad();
  double loss_sum = 0.0;
  const int64_t first_sample = step * global_batch_ + dp_rank_ * rank_batch_;
  for (int64_t micro = 0; micro < accumulation_; ++micro) {
    // Dropout masks depend only on (seed, step, rank, micro-batch): resumed runs draw the same.
    torch::manual_seed(static_cast<uint64_t>(config_.train.seed) * 1000003u +
                       (step * dp_size_ + dp_rank_) * accumulation_ + micro);
    train_sampler_->fill(first_sample + micro * rows, rows, inputs.data(), targets.data());
    if (gradient_sync_) gradient_sync_->set_sync_this_backward(micro == accumulation_ - 1);
    auto loss = model_->loss(batch_tensor(inputs), batch_tensor(targets));
    (loss / static_cast<double>(accumulation_)).backward();
    params_->accumulate_micro_batch_grads();
    loss_sum += loss.item<double>();
  }
  if (gradient_sync_) {
    gradient_sync_->finish();
    summary_.buckets_overlapped = gradient_sync_->started_during_backward();
  }
  return mean_over_ranks(loss_sum / static_cast<double>(accumulation_));
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  const int64_t rows = config_.train.micro_batch_size;
  std::vector<int64_t> inputs(rows * config_.data.seq_len), targets(inputs.size());
  double sum = 0.0;
  // Ranks split the evaluation batches between them.
  for (int64_t batch = dp_rank_; batch < config_.train.eval_batches; batch += dp_size_) {
    val_sampler_->fill(batch * rows, rows, inputs.data(), targets.data());
    sum += model_->loss(batch_tensor(inputs), batch_tensor(targets)).item<double>();
  }
  model_->train();
  return mean_over_ranks(sum * dp_size_) / static_cast<double>(config_.train.eval_batches);
}

double Trainer::mean_over_ranks(double value) {
  if (dp_size_ == 1) return value;
  auto t = torch::tensor({value}, torch::kDouble);
  world_->all_reduce(t, ReduceOp::Avg);
  return t.item<double>();
}

bool Trainer::any_rank(bool flag) {
  if (dp_size_ == 1) return flag;
  auto t = torch::tensor({flag ? 1 : 0}, torch::kInt);
  world_->all_reduce(t, ReduceOp::Max);
  return t.item<int>() != 0;
}

FullOptimizerState Trainer::full_optimizer_state() {
  const auto [begin, end] = optimizer_->shard();
  if (end - begin == params_->numel()) return full_state_of(*optimizer_);
  // ZeRO-1: every rank contributes its shard of the moments.
  FullOptimizerState state{optimizer_->step_count(), torch::empty_like(params_->master()),
                           torch::empty_like(params_->master())};
  tensor_group_->all_gather(optimizer_->exp_avg(), state.exp_avg);
  tensor_group_->all_gather(optimizer_->exp_avg_sq(), state.exp_avg_sq);
  return state;
}

void Trainer::save(int64_t steps_done) {
  // Replicated weights and gathered moments: rank 0 writes, the others wait for it.
  const auto root = checkpoint_root();
  const FullOptimizerState optimizer_state = full_optimizer_state();
  if (dp_rank_ == 0) {
    summary_.last_checkpoint = save_train_checkpoint(root, config_, {steps_done, steps_done * global_batch_},
                                                     dp_size_, *params_, optimizer_state);
    prune_checkpoints(root, config_.checkpoint.keep);
  } else {
    summary_.last_checkpoint = (std::filesystem::path(root) / checkpoint_dir_name(steps_done)).string();
  }
  if (world_) world_->barrier();
}

TrainSummary Trainer::run() {
  const auto& train = config_.train;
  if (dp_rank_ == 0) {
    std::filesystem::create_directories(config_.runtime.run_dir);
    std::ofstream out(std::filesystem::path(config_.runtime.run_dir) / "config.yaml");
    out << dump_config(config_);
  }
  MetricsFile metrics((std::filesystem::path(config_.runtime.run_dir) / "metrics.jsonl").string(),
                      /*append=*/start_step_ > 0);
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
  auto master = params_->master().to(torch::kCPU).contiguous();
  summary_.parameters_crc32 = crc32(master.data_ptr<float>(), master.numel() * sizeof(float));
  return summary_;
}

void Trainer::run_steps(MetricsFile& metrics, ProgressReporter& progress) {
  const auto& train = config_.train;
  const double flops_per_step = flops_per_token(spec_, config_.data.seq_len) * global_batch_ * config_.data.seq_len;
  for (int64_t step = start_step_; step < train.steps; ++step) {
    maybe_inject_failure(world_ ? world_->world_ranks()[dp_rank_] : 0, step + 1);
    const auto start = std::chrono::steady_clock::now();
    StepMetrics m;
    m.step = step + 1;
    m.total_steps = train.steps;
    m.loss = train_step(step);
    if (!std::isfinite(m.loss)) fail("loss is {} at step {}: training diverged (lower optimizer.lr?)", m.loss, m.step);
    m.grad_norm = params_->master_grad().norm().item<double>();
    const double clip = train.clip_grad_norm > 0 && m.grad_norm > train.clip_grad_norm
                            ? train.clip_grad_norm / (m.grad_norm + 1e-6)
                            : 1.0;
    m.lr = learning_rate(config_.lr_schedule, config_.optimizer.lr, step, train.steps);
    optimizer_->step(m.lr, clip);
    const auto [shard_begin, shard_end] = optimizer_->shard();
    if (shard_end - shard_begin < params_->numel()) {
      // ZeRO-1: each rank updated its shard; gather everyone's into the full weights.
      tensor_group_->all_gather(params_->master().narrow(0, shard_begin, shard_end - shard_begin), params_->master());
    }
    params_->publish_master();
    m.step_time_s = seconds_since(start);
    m.tokens_per_s = static_cast<double>(global_batch_ * config_.data.seq_len) / m.step_time_s;
    m.flops_per_s = flops_per_step / m.step_time_s;
    m.mfu = m.flops_per_s / (summary_.peak_flops * dp_size_);
    m.peak_host_bytes = peak_rss_bytes();
    m.peak_device_bytes = peak_device_bytes(device_);
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
    const bool stop = any_rank(g_stop_signal != 0);
    if (periodic || (last && config_.checkpoint.save_final) || stop) save(m.step);
    if (stop) {
      summary_.interrupted = true;
      progress.print(fmt::format("stopped by signal {} after step {}; checkpoint {}", g_stop_signal.load(), m.step,
                                 summary_.last_checkpoint.value_or("-")));
      break;
    }
  }
}

}  // namespace

TrainSummary run_training(const Config& config, Communicator* world, Communicator* device_group) {
  try {
    return Trainer(config, world, device_group).run();
  } catch (const std::exception& e) {
    fail_job_if_distributed(e);
    throw;
  }
}

}  // namespace cr
