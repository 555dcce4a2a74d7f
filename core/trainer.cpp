#include "core/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/adamw_optimizer.h"
#include "core/checkpoint_store.h"
#include "core/dataset.h"
#include "core/error.h"
#include "core/hf_import.h"
#include "core/log.h"
#include "core/loss_scaler.h"
#include "core/lr_schedule.h"
#include "core/mesh_layout.h"
#include "core/model_factory.h"
#include "core/runtime.h"
#include "core/strings.h"
#include "core/crc32.h"
#include "core/train_checkpoint.h"
#include "memory/flat_parameters.h"
#include "memory/gradient_sync.h"
#include "memory/parameter_gatherer.h"
#include "memory/zero_parameters.h"
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

// Test hook for fp16 loss scaling: "RANK:STEP" puts an infinity into that rank's gradient at that step.
bool inject_infinite_gradient(int rank, int64_t step) {
  const char* spec = std::getenv("COLOSSAL_RUN_INF_GRAD_AT_STEP");
  if (!spec) return false;
  int inf_rank = -1;
  long long inf_step = -1;
  return std::sscanf(spec, "%d:%lld", &inf_rank, &inf_step) == 2 && inf_rank == rank && inf_step == step;
}

class Trainer {
 public:
  Trainer(const Config& config, Communicator* world, Communicator* device_group);
  TrainSummary run();

 private:
  void run_steps(MetricsFile& metrics, ProgressReporter& progress);
  double train_step(int64_t step);
  torch::Tensor forward_loss(const torch::Tensor& inputs, const torch::Tensor& targets);
  // Clips, unscales and applies the step's gradients, unless they overflowed; fills m.
  void apply_gradients(int64_t step, StepMetrics& m);
  double evaluate();
  StateBytes state_bytes() const;
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
  std::unique_ptr<ZeroParameters> params_;
  std::unique_ptr<AdamWOptimizer> optimizer_;
  std::unique_ptr<GradientSynchronizer> gradient_sync_;
  std::unique_ptr<ParameterGatherer> gatherer_;  // ZeRO stage 3
  std::optional<DynamicLossScaler> loss_scaler_;  // fp16
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
  summary_.data_parallel_size = dp_size_;
  FullOptimizerState resumed;
  {
    // The whole fp32 weights, initialised or loaded, until ZeroParameters takes its share.
    FlatParameters init(*model_, torch::kFloat);
    if (const auto resume_dir = checkpoint_to_resume(config_.checkpoint, checkpoint_root())) {
      const auto position = load_train_checkpoint(*resume_dir, init, &resumed);
      start_step_ = position.step;
      if (position.samples_consumed != start_step_ * global_batch_) {
        fail("checkpoint {}: it consumed {} samples in {} steps, which does not match train.global_batch_size {}",
             *resume_dir, position.samples_consumed, position.step, global_batch_);
      }
      print0("resumed from {} at step {}", *resume_dir, start_step_);
    } else if (config_.model.init_from) {
      load_init_weights(*config_.model.init_from, init, spec_);
      print0("initialised weights from {}", *config_.model.init_from);
    }
    // Every rank starts from rank 0's weights, whatever initialised or loaded them.
    if (dp_size_ > 1) tensor_group_->broadcast(init.master(), 0);
    const auto bucket_bytes = static_cast<int64_t>(config_.parallel.bucket_mb * 1024 * 1024);
    params_ = std::make_unique<ZeroParameters>(init, dtype_, static_cast<int>(config_.zero.stage),
                                               ShardLayout(init.buckets(bucket_bytes), dp_rank_, dp_size_),
                                               dp_size_ > 1 ? tensor_group_ : nullptr, config_.precision.master_weights);
  }
  summary_.first_step = start_step_;
  summary_.parameters = params_->numel();
  optimizer_ = std::make_unique<AdamWOptimizer>(config_.optimizer, *params_);
  summary_.optimizer_state_bytes = optimizer_->state_bytes();
  if (resumed.exp_avg.defined()) {
    // Whole moments on disk; this rank keeps its shard of them.
    const auto& owned = params_->owned();
    optimizer_->exp_avg().copy_(owned.sharded() ? owned.shard_of(resumed.exp_avg) : resumed.exp_avg);
    optimizer_->exp_avg_sq().copy_(owned.sharded() ? owned.shard_of(resumed.exp_avg_sq) : resumed.exp_avg_sq);
    optimizer_->set_step_count(resumed.step_count);
    resumed.exp_avg = resumed.exp_avg_sq = torch::Tensor();  // free the whole moments
  }
  const bool overlap = config_.zero.overlap_communication;
  gradient_sync_ = std::make_unique<GradientSynchronizer>(*params_, overlap);
  if (config_.zero.stage == 3) gatherer_ = std::make_unique<ParameterGatherer>(*params_, spec_.n_layer, overlap);
  if (dtype_ == torch::kHalf) {
    loss_scaler_.emplace(config_.precision);
    if (resumed.loss_scale) loss_scaler_->set_state(*resumed.loss_scale);
  }
  summary_.gradient_bytes_sent_per_step = gradient_sync_->bytes_sent_per_step();
  summary_.gradient_buckets = gradient_sync_->bucket_count();

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
  if (gatherer_) gatherer_->gather_outer();
  double loss_sum = 0.0;
  const int64_t first_sample = step * global_batch_ + dp_rank_ * rank_batch_;
  for (int64_t micro = 0; micro < accumulation_; ++micro) {
    // Dropout masks depend only on (seed, step, rank, micro-batch): resumed runs draw the same.
    torch::manual_seed(static_cast<uint64_t>(config_.train.seed) * 1000003u +
                       (step * dp_size_ + dp_rank_) * accumulation_ + micro);
    train_sampler_->fill(first_sample + micro * rows, rows, inputs.data(), targets.data());
    gradient_sync_->begin_backward(micro == accumulation_ - 1);
    auto loss = forward_loss(batch_tensor(inputs), batch_tensor(targets));
    if (loss_scaler_) {
      (loss * (loss_scaler_->scale() / static_cast<double>(accumulation_))).backward();
    } else {
      (loss / static_cast<double>(accumulation_)).backward();
    }
    gradient_sync_->end_backward();
    loss_sum += loss.item<double>();
  }
  if (gatherer_) gatherer_->release_all();
  summary_.buckets_overlapped = gradient_sync_->started_during_backward();
  return mean_over_ranks(loss_sum / static_cast<double>(accumulation_));
}

torch::Tensor Trainer::forward_loss(const torch::Tensor& inputs, const torch::Tensor& targets) {
  if (!gatherer_) return model_->loss(inputs, targets);
  // The same operations as CausalLM::loss, with each layer's weights gathered around it.
  auto x = model_->embed(inputs);
  for (int64_t layer = 0; layer < spec_.n_layer; ++layer) {
    gatherer_->before_layer(layer);
    x = gatherer_->after_layer(layer, model_->run_blocks(x, layer, layer + 1));
  }
  return model_->head_loss(x, targets);
}

void Trainer::apply_gradients(int64_t step, StepMetrics& m) {
  const int global_rank = world_ ? world_->world_ranks()[dp_rank_] : 0;
  if (inject_infinite_gradient(global_rank, m.step)) {
    params_->gradient(0).fill_(std::numeric_limits<float>::infinity());
  }
  const double loss_scale = loss_scaler_ ? loss_scaler_->scale() : 1.0;
  m.grad_norm = std::sqrt(params_->gradient_sum_of_squares()) / loss_scale;
  // Ranks must agree: an overflow on any of them skips the step on all.
  const bool overflow = any_rank(!std::isfinite(m.grad_norm));
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
  optimizer_->step(m.lr, clip / loss_scale);
  params_->publish();
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  if (gatherer_) gatherer_->gather_outer();
  const int64_t rows = config_.train.micro_batch_size;
  std::vector<int64_t> inputs(rows * config_.data.seq_len), targets(inputs.size());
  double sum = 0.0;
  // Ranks split the evaluation batches between them; at stage 3 every rank must take part in
  // every layer's gather, so all run the same number of batches (the extra ones count zero).
  const int64_t batches = config_.train.eval_batches;
  const int64_t rounds = (batches + dp_size_ - 1) / dp_size_;
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t batch = round * dp_size_ + dp_rank_;
    if (batch >= batches && !gatherer_) break;
    val_sampler_->fill(std::min(batch, batches - 1) * rows, rows, inputs.data(), targets.data());
    const double loss = forward_loss(batch_tensor(inputs), batch_tensor(targets)).item<double>();
    if (batch < batches) sum += loss;
  }
  if (gatherer_) gatherer_->release_all();
  model_->train();
  return mean_over_ranks(sum * dp_size_) / static_cast<double>(batches);
}

StateBytes Trainer::state_bytes() const {
  StateBytes bytes;
  bytes.parameters = params_->compute_bytes() + (gatherer_ ? gatherer_->peak_gathered_bytes() : 0);
  bytes.master_weights = params_->master_bytes();
  bytes.gradients = params_->gradient_bytes() + gradient_sync_->peak_staging_bytes();
  bytes.optimizer_states = optimizer_->state_bytes();
  return bytes;
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
  FullOptimizerState state{optimizer_->step_count(), optimizer_->exp_avg(), optimizer_->exp_avg_sq(), std::nullopt};
  if (loss_scaler_) state.loss_scale = loss_scaler_->state();
  const auto& owned = params_->owned();
  if (!owned.sharded()) return state;
  // Every rank contributes its shard of the moments.
  state.exp_avg = torch::empty({params_->numel()}, optimizer_->exp_avg().options());
  state.exp_avg_sq = torch::empty_like(state.exp_avg);
  owned.gather(tensor_group_, optimizer_->exp_avg(), state.exp_avg);
  owned.gather(tensor_group_, optimizer_->exp_avg_sq(), state.exp_avg_sq);
  return state;
}

void Trainer::save(int64_t steps_done) {
  // Whole weights and moments, gathered: rank 0 writes, the others wait for it.
  const auto root = checkpoint_root();
  const torch::Tensor master = params_->full_master();
  const FullOptimizerState optimizer_state = full_optimizer_state();
  if (dp_rank_ == 0) {
    summary_.last_checkpoint = save_train_checkpoint(root, config_, {steps_done, steps_done * global_batch_},
                                                     dp_size_, params_->entries(), master, optimizer_state);
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
  auto master = params_->full_master().to(torch::kCPU).contiguous();
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
    if (!std::isfinite(m.loss) && !loss_scaler_) {
      fail("loss is {} at step {}: training diverged (lower optimizer.lr?)", m.loss, m.step);
    }
    apply_gradients(step, m);
    m.step_time_s = seconds_since(start);
    m.tokens_per_s = static_cast<double>(global_batch_ * config_.data.seq_len) / m.step_time_s;
    m.flops_per_s = flops_per_step / m.step_time_s;
    m.mfu = m.flops_per_s / (summary_.peak_flops * dp_size_);
    m.peak_host_bytes = peak_rss_bytes();
    m.peak_device_bytes = peak_device_bytes(device_);
    m.state = state_bytes();
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
