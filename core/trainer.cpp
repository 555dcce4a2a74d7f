#include "core/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "core/adamw_optimizer.h"
#include "core/checkpoint_store.h"
#include "core/dataset.h"
#include "core/error.h"
#include "core/log.h"
#include "core/lr_schedule.h"
#include "core/model_factory.h"
#include "core/runtime.h"
#include "core/strings.h"
#include "core/train_checkpoint.h"
#include "memory/flat_parameters.h"

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

class Trainer {
 public:
  explicit Trainer(const Config& config);
  TrainSummary run();

 private:
  double train_step(int64_t step);
  double evaluate();
  torch::Tensor batch_tensor(const std::vector<int64_t>& values) const;
  std::string checkpoint_root() const;
  void save(int64_t steps_done);

  Config config_;
  ModelSpec spec_;
  torch::Device device_;
  torch::ScalarType dtype_;
  int64_t global_batch_ = 0;
  int64_t accumulation_ = 0;
  DataSplits data_;
  std::optional<BatchSampler> train_sampler_, val_sampler_;
  GPT2 model_{nullptr};
  std::unique_ptr<FlatParameters> params_;
  std::unique_ptr<AdamWOptimizer> optimizer_;
  TrainSummary summary_;
  int64_t start_step_ = 0;
};

Trainer::Trainer(const Config& config)
    : config_(config), device_(resolve_device(config.runtime)), dtype_(compute_dtype(config.precision)) {
  const int threads = configure_threads(config_.runtime);
  spec_ = model_spec_from_config(config_.model);
  if (config_.data.seq_len > spec_.max_seq_len) {
    fail("data.seq_len {} exceeds the model's max_seq_len {} (set model.max_seq_len)", config_.data.seq_len,
         spec_.max_seq_len);
  }
  global_batch_ = config_.train.global_batch_size > 0 ? config_.train.global_batch_size : config_.train.micro_batch_size;
  accumulation_ = global_batch_ / config_.train.micro_batch_size;

  data_ = open_data(config_.data, spec_.vocab_size, static_cast<uint64_t>(config_.train.seed));
  train_sampler_.emplace(data_.train, static_cast<uint64_t>(config_.train.seed), /*shuffle=*/true);
  if (data_.val) val_sampler_.emplace(data_.val, static_cast<uint64_t>(config_.train.seed), /*shuffle=*/false);

  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  model_ = GPT2(spec_);
  model_->to(device_);
  params_ = std::make_unique<FlatParameters>(*model_, dtype_);
  optimizer_ = std::make_unique<AdamWOptimizer>(config_.optimizer, *params_);
  summary_.parameters = params_->numel();

  if (const auto resume_dir = checkpoint_to_resume(config_.checkpoint, checkpoint_root())) {
    const auto position = load_train_checkpoint(*resume_dir, *params_, optimizer_.get());
    start_step_ = position.step;
    if (position.samples_consumed != start_step_ * global_batch_) {
      fail("checkpoint {}: it consumed {} samples in {} steps, which does not match train.global_batch_size {}",
           *resume_dir, position.samples_consumed, position.step, global_batch_);
    }
    print0("resumed from {} at step {}", *resume_dir, start_step_);
  } else if (config_.model.init_from) {
    load_train_checkpoint(*config_.model.init_from, *params_, nullptr);
    print0("initialised weights from {}", *config_.model.init_from);
  }
  summary_.first_step = start_step_;

  summary_.peak_flops = config_.train.peak_flops > 0 ? config_.train.peak_flops : measure_gemm_flops(dtype_, device_);
  print0("data: {}", data_.description);
  print0("model {} ({} parameters, {}) | {} threads on {} | global batch {} = {} x {} micro-batches | "
         "peak {:.1f} GFLOP/s",
         config_.model.preset.value_or(spec_.arch), with_thousands(params_->numel()), config_.precision.dtype, threads,
         device_.str(), global_batch_, accumulation_, config_.train.micro_batch_size, summary_.peak_flops / 1e9);
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
  for (int64_t micro = 0; micro < accumulation_; ++micro) {
    // Dropout masks depend only on (seed, step, micro-batch): resumed runs draw the same ones.
    torch::manual_seed(static_cast<uint64_t>(config_.train.seed) * 1000003u + step * accumulation_ + micro);
    train_sampler_->fill(step * global_batch_ + micro * rows, rows, inputs.data(), targets.data());
    auto loss = model_->loss(batch_tensor(inputs), batch_tensor(targets));
    (loss / static_cast<double>(accumulation_)).backward();
    params_->accumulate_micro_batch_grads();
    loss_sum += loss.item<double>();
  }
  return loss_sum / static_cast<double>(accumulation_);
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  const int64_t rows = config_.train.micro_batch_size;
  std::vector<int64_t> inputs(rows * config_.data.seq_len), targets(inputs.size());
  double sum = 0.0;
  for (int64_t batch = 0; batch < config_.train.eval_batches; ++batch) {
    val_sampler_->fill(batch * rows, rows, inputs.data(), targets.data());
    sum += model_->loss(batch_tensor(inputs), batch_tensor(targets)).item<double>();
  }
  model_->train();
  return sum / static_cast<double>(config_.train.eval_batches);
}

void Trainer::save(int64_t steps_done) {
  const auto root = checkpoint_root();
  summary_.last_checkpoint =
      save_train_checkpoint(root, config_, {steps_done, steps_done * global_batch_}, *params_, *optimizer_);
  prune_checkpoints(root, config_.checkpoint.keep);
}

TrainSummary Trainer::run() {
  const auto& train = config_.train;
  std::filesystem::create_directories(config_.runtime.run_dir);
  {
    std::ofstream out(std::filesystem::path(config_.runtime.run_dir) / "config.yaml");
    out << dump_config(config_);
  }
  MetricsFile metrics((std::filesystem::path(config_.runtime.run_dir) / "metrics.jsonl").string(),
                      /*append=*/start_step_ > 0);
  ProgressReporter progress(start_step_, train.steps, train.log_every, config_.runtime.progress_bar);
  if (!val_sampler_ && train.eval_every > 0) warn0("no validation data (data.val empty, data.val_fraction 0): evaluation is off");
  StopSignalScope stop_scope;
  const double flops_per_step = flops_per_token(spec_, config_.data.seq_len) * global_batch_ * config_.data.seq_len;

  for (int64_t step = start_step_; step < train.steps; ++step) {
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
    m.step_time_s = seconds_since(start);
    m.tokens_per_s = static_cast<double>(global_batch_ * config_.data.seq_len) / m.step_time_s;
    m.flops_per_s = flops_per_step / m.step_time_s;
    m.mfu = m.flops_per_s / summary_.peak_flops;
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
    if (periodic || (last && config_.checkpoint.save_final) || g_stop_signal) save(m.step);
    if (g_stop_signal) {
      summary_.interrupted = true;
      progress.print(fmt::format("stopped by signal {} after step {}; checkpoint {}", g_stop_signal.load(), m.step,
                                 summary_.last_checkpoint.value_or("-")));
      break;
    }
  }
  progress.finish();
  return summary_;
}

}  // namespace

TrainSummary run_training(const Config& config) { return Trainer(config).run(); }

}  // namespace cr
