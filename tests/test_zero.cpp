// ZeRO in training: stages 1-3 against stage 0 (bitwise), the fp16 loss scaler in training,
// mixed precision tracking fp32, memory each rank reports against `plan`, and resume. The parts
// they are built from (scaler rules, shard layout, norm reduction) are in test_zero_parts.cpp.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/base/error.h"
#include "memory/loss_scaler.h"
#include "core/train/model_factory.h"
#include "core/plan/plan.h"
#include "core/train/trainer.h"
#include "models/model_spec.h"
#include "shared_data.h"
#include "temp_dir.h"

using namespace cr;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Training configs

// A tiny model on synthetic tokens: global batch 4 = 2 micro-batches of 2 (accumulation 2),
// buckets of about 10 KiB (many of them for a tiny model), clipping well below the gradient
// norm so that every step clips.
Config zero_config(const fs::path& run_dir, const std::string& preset, std::vector<std::string> overrides = {}) {
  std::string text = R"(
model: {preset: PRESET}
data: {format: synthetic, seq_len: 32}
train: {micro_batch_size: 2, global_batch_size: 4, steps: 10, log_every: 100, eval_every: 0, seed: 5,
        clip_grad_norm: 0.05}
optimizer: {lr: 3.0e-3}
lr_schedule: {warmup_steps: 2, min_lr: 1.0e-4, decay_steps: 10}  # fixed, so a shorter run shares the schedule
parallel: {bucket_mb: 0.01}
checkpoint: {every: 0, save_final: false}
runtime: {threads: 1, progress_bar: false, run_dir: RUN_DIR}
)";
  text.replace(text.find("PRESET"), 6, preset);
  text.replace(text.find("RUN_DIR"), 7, run_dir.string());
  overrides.push_back("train.peak_flops=1.0e9");  // skip the start-up GEMM measurement
  return load_config_text(text, "test_zero", overrides);
}

// Exactly equal, or both NaN (an overflowing step's gradient norm can be NaN: inf - inf).
bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// Every per-step number that must not depend on the ZeRO stage, compared exactly.
void check_bitwise_equal(const TrainSummary& reference, const TrainSummary& run) {
  REQUIRE(run.steps.size() == reference.steps.size());
  for (size_t i = 0; i < reference.steps.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(run.steps[i].loss == reference.steps[i].loss);
    CHECK(same(run.steps[i].grad_norm, reference.steps[i].grad_norm));
    CHECK(run.steps[i].loss_scale == reference.steps[i].loss_scale);
    CHECK(run.steps[i].skipped == reference.steps[i].skipped);
  }
  CHECK(run.parameters_crc32 == reference.parameters_crc32);
}

bool all_finite_losses(const TrainSummary& summary) {
  for (const auto& step : summary.steps) {
    if (!std::isfinite(step.loss)) return false;
  }
  return true;
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { REQUIRE(::setenv(name, value, 1) == 0); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

constexpr const char* kInfGradEnv = "COLOSSAL_RUN_INF_GRAD_AT_STEP";

}  // namespace

TEST_CASE("loss scaler: a training config with inconsistent bounds is refused naming the keys", "[zero][scaler]") {
  cr::test::TempDir dir;
  CHECK_THROWS_WITH(run_training(zero_config(dir.path(), "gpt2-tiny",
                                             {"precision.dtype=fp16", "precision.min_scale=100",
                                              "precision.max_scale=10", "precision.initial_scale=50"})),
                    Catch::Contains("precision.min_scale") && Catch::Contains("precision.max_scale"));
  CHECK_THROWS_WITH(run_training(zero_config(dir.path(), "gpt2-tiny",
                                             {"precision.dtype=fp16", "precision.initial_scale=1e12"})),
                    Catch::Contains("precision.initial_scale"));
}

// =============================================================================================
// 4. ZeRO stages 1-3 against stage 0, bitwise

namespace {

void check_stages_bitwise(const std::string& preset, const std::string& dtype, std::vector<std::string> extra = {}) {
  cr::test::TempDir dir;
  auto overrides = extra;
  overrides.push_back("precision.dtype=" + dtype);
  const auto reference = run_training(zero_config(dir.path() / "stage0", preset, overrides));
  REQUIRE(reference.steps.size() == 10);
  // The clip threshold is active: the comparisons below include the clipping factor.
  int clipped = 0;
  for (const auto& step : reference.steps) clipped += step.grad_norm > 0.05 ? 1 : 0;
  CHECK(clipped >= 5);
  CHECK(all_finite_losses(reference));
  for (bool overlap : {true, false}) {
    for (int stage = 1; stage <= 3; ++stage) {
      INFO(preset << " " << dtype << " stage " << stage << " overlap " << overlap);
      auto stage_overrides = overrides;
      stage_overrides.push_back("zero.stage=" + std::to_string(stage));
      stage_overrides.push_back(std::string("zero.overlap_communication=") + (overlap ? "true" : "false"));
      const auto run = run_training(
          zero_config(dir.path() / ("stage" + std::to_string(stage) + (overlap ? "o" : "n")), preset, stage_overrides));
      check_bitwise_equal(reference, run);
    }
  }
}

}  // namespace

TEST_CASE("ZeRO stages 1-3 train bitwise like stage 0: gpt2-tiny fp32 (with dropout)", "[zero][train]") {
  check_stages_bitwise("gpt2-tiny", "fp32", {"model.dropout=0.1"});
}

TEST_CASE("ZeRO stages 1-3 train bitwise like stage 0: gpt2-tiny bf16", "[zero][train]") {
  check_stages_bitwise("gpt2-tiny", "bf16");
}

TEST_CASE("ZeRO stages 1-3 train bitwise like stage 0: llama-tiny fp32", "[zero][train]") {
  check_stages_bitwise("llama-tiny", "fp32");
}

TEST_CASE("ZeRO stages 1-3 train bitwise like stage 0: llama-tiny bf16", "[zero][train]") {
  check_stages_bitwise("llama-tiny", "bf16");
}

TEST_CASE("ZeRO stages 1-3 train bitwise like stage 0: gpt2-tiny fp16 through an overflow", "[zero][train][fp16]") {
  // The skipped step and the halved scale go through the same path at every stage.
  ScopedEnv env(kInfGradEnv, "0:4");
  check_stages_bitwise("gpt2-tiny", "fp16", {"precision.initial_scale=1024", "precision.hysteresis=1"});
}

// =============================================================================================
// 5. Memory accounting: what the trainer holds equals what `plan` predicts

namespace {

// plan's staging figure is an upper bound (two consecutive buckets), reached with overlap;
// without it a rank usually holds one bucket, so gradients are checked against the bound there.
void check_state_matches_plan(const std::vector<std::string>& extra, bool staging_at_bound) {
  cr::test::TempDir dir;
  for (const char* dtype : {"fp32", "bf16", "fp16"}) {
    for (int stage = 0; stage <= 3; ++stage) {
      INFO(dtype << " stage " << stage);
      auto overrides = extra;
      overrides.push_back(std::string("precision.dtype=") + dtype);
      overrides.push_back("zero.stage=" + std::to_string(stage));
      overrides.push_back("train.steps=2");
      overrides.push_back("precision.initial_scale=256");
      const auto config = zero_config(dir.path() / (std::string(dtype) + std::to_string(stage)), "gpt2-tiny", overrides);
      const auto summary = run_training(config);
      REQUIRE(summary.steps.size() == 2);
      const StateBytes& measured = summary.steps.back().state;
      const ModelSpec spec = model_spec_from_config(config.model);
      const MemoryEstimate predicted = estimate_memory(spec, config, 1);
      CHECK(measured.parameters == predicted.parameters);
      CHECK(measured.master_weights == predicted.master_weights);
      CHECK(measured.optimizer_states == predicted.optimizer_states);
      if (staging_at_bound || stage < 2) {
        CHECK(measured.gradients == predicted.gradients);
        CHECK(measured.total() == predicted.StateBytes::total());
      } else {
        CHECK(measured.gradients <= predicted.gradients);
        CHECK(measured.total() >= 0.95 * static_cast<double>(predicted.StateBytes::total()));
      }

      const int64_t n = parameter_count(spec);
      CHECK(summary.parameters == n);
      CHECK(measured.optimizer_states == 8 * n);  // one rank: whole Adam moments
      if (stage == 0) {
        const int64_t per_parameter = std::string(dtype) == "fp32" ? 16 : 18;
        CHECK(measured.total() == per_parameter * n);
        CHECK(measured.parameters == (std::string(dtype) == "fp32" ? 4 : 2) * n);
        CHECK(measured.master_weights == (std::string(dtype) == "fp32" ? 0 : 4) * n);
        CHECK(measured.gradients == 4 * n);
      }
    }
  }
}

}  // namespace

TEST_CASE("memory: each rank's training state equals plan's estimate, stages 0-3, fp32/bf16/fp16",
          "[zero][memory]") {
  check_state_matches_plan({}, /*staging_at_bound=*/true);
}

TEST_CASE("memory: the estimate also holds without communication overlap", "[zero][memory]") {
  check_state_matches_plan({"zero.overlap_communication=false"}, /*staging_at_bound=*/false);
}

// =============================================================================================
// 6. Mixed precision tracks fp32

TEST_CASE("bf16 and fp16 track fp32's loss within 5e-3 over 20 steps of tinyshakespeare", "[zero][precision][data]") {
  const std::string data = std::string(CR_SHARED_DATA) + "/tinyshakespeare.txt";
  if (!cr::test::shared_data_present({data})) return;
  cr::test::TempDir dir;
  auto run = [&](const std::string& dtype) {
    return run_training(zero_config(dir.path() / dtype, "gpt2-tiny",
                                    {"data.format=text", "data.tokenizer=byte", "data.train=" + data,
                                     "data.val_fraction=0.1", "data.seq_len=64", "train.micro_batch_size=8",
                                     "train.global_batch_size=16", "train.steps=20", "train.clip_grad_norm=1.0",
                                     "lr_schedule.decay_steps=20", "optimizer.lr=3.0e-3",
                                     "precision.dtype=" + dtype}));
  };
  const auto fp32 = run("fp32");
  REQUIRE(fp32.losses.size() == 20);
  // The loss really falls: from about ln(512) to well below it.
  CHECK(fp32.losses.front() > 0.9 * std::log(512.0));
  CHECK(fp32.losses.back() < 0.8 * fp32.losses.front());
  for (const char* dtype : {"bf16", "fp16"}) {
    const auto low = run(dtype);
    REQUIRE(low.losses.size() == 20);
    for (size_t i = 0; i < 20; ++i) {
      INFO(dtype << " step " << i + 1 << ": " << low.losses[i] << " vs fp32 " << fp32.losses[i]);
      CHECK(std::fabs(low.losses[i] - fp32.losses[i]) <= 5e-3 * std::fabs(fp32.losses[i]));
      CHECK_FALSE(low.steps[i].skipped);
    }
    CHECK(low.losses.back() < 0.8 * low.losses.front());
  }
}

// =============================================================================================
// 7. fp16 loss scaling in training

TEST_CASE("fp16: an injected overflow with hysteresis 1 skips that step and halves the scale", "[zero][fp16]") {
  cr::test::TempDir dir;
  const std::vector<std::string> overrides = {"precision.dtype=fp16", "precision.initial_scale=1024",
                                              "precision.hysteresis=1", "train.steps=6"};
  const auto clean = run_training(zero_config(dir.path() / "clean", "gpt2-tiny", overrides));
  REQUIRE(clean.steps.size() == 6);
  for (const auto& step : clean.steps) {
    CHECK_FALSE(step.skipped);
    CHECK(step.loss_scale == 1024.0);
  }
  TrainSummary injected;
  {
    ScopedEnv env(kInfGradEnv, "0:3");
    injected = run_training(zero_config(dir.path() / "injected", "gpt2-tiny", overrides));
  }
  REQUIRE(injected.steps.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    INFO("step " << i + 1);
    CHECK(injected.steps[i].skipped == (i == 2));
    CHECK(injected.steps[i].loss_scale == (i < 3 ? 1024.0 : 512.0));
    CHECK(std::isfinite(injected.steps[i].loss));
    if (i != 2) CHECK(std::isfinite(injected.steps[i].grad_norm));
  }
  CHECK(std::isinf(injected.steps[2].grad_norm));
  // Up to the injected step the runs are the same computation.
  for (size_t i = 0; i < 3; ++i) CHECK(injected.steps[i].loss == clean.steps[i].loss);
  // The skipped update leaves different final weights.
  CHECK(injected.parameters_crc32 != clean.parameters_crc32);
}

TEST_CASE("fp16: with the default hysteresis 2 one overflow skips the step but keeps the scale", "[zero][fp16]") {
  cr::test::TempDir dir;
  TrainSummary injected;
  {
    ScopedEnv env(kInfGradEnv, "0:3");
    injected = run_training(zero_config(dir.path() / "injected", "gpt2-tiny",
                                        {"precision.dtype=fp16", "precision.initial_scale=1024", "train.steps=6",
                                         "zero.stage=3"}));
  }
  REQUIRE(injected.steps.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    INFO("step " << i + 1);
    CHECK(injected.steps[i].skipped == (i == 2));
    CHECK(injected.steps[i].loss_scale == 1024.0);
    CHECK(std::isfinite(injected.steps[i].loss));
  }
  CHECK(std::isinf(injected.steps[2].grad_norm));
}

// =============================================================================================
// 8. Resume at ZeRO stage 3 (bf16) and with fp16 loss scaling

namespace {

// Runs 10 steps uninterrupted, and 5 + 5 with a checkpoint at step 5 resumed from the same run
// directory; returns (uninterrupted, resumed).
std::pair<TrainSummary, TrainSummary> full_and_resumed(const fs::path& dir, const std::vector<std::string>& overrides) {
  auto with = [&](std::vector<std::string> more) {
    auto all = overrides;
    all.insert(all.end(), more.begin(), more.end());
    return all;
  };
  const auto full = run_training(zero_config(dir / "full", "gpt2-tiny", with({"checkpoint.every=5"})));
  const auto first = run_training(zero_config(dir / "split", "gpt2-tiny", with({"checkpoint.every=5", "train.steps=5"})));
  REQUIRE(first.steps.size() == 5);
  for (size_t i = 0; i < 5; ++i) CHECK(first.steps[i].loss == full.steps[i].loss);
  const auto resumed =
      run_training(zero_config(dir / "split", "gpt2-tiny", with({"checkpoint.every=5", "checkpoint.resume=auto"})));
  return {full, resumed};
}

void check_resumed(const TrainSummary& full, const TrainSummary& resumed) {
  REQUIRE(full.steps.size() == 10);
  CHECK(resumed.first_step == 5);
  REQUIRE(resumed.steps.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    INFO("step " << i + 6);
    CHECK(resumed.steps[i].step == full.steps[5 + i].step);
    CHECK(resumed.steps[i].loss == full.steps[5 + i].loss);
    CHECK(same(resumed.steps[i].grad_norm, full.steps[5 + i].grad_norm));
    CHECK(resumed.steps[i].loss_scale == full.steps[5 + i].loss_scale);
    CHECK(resumed.steps[i].skipped == full.steps[5 + i].skipped);
  }
  CHECK(resumed.parameters_crc32 == full.parameters_crc32);
}

}  // namespace

TEST_CASE("resume: ZeRO stage 3 bf16 continues bit for bit", "[zero][resume]") {
  cr::test::TempDir dir;
  const auto [full, resumed] = full_and_resumed(dir.path(), {"precision.dtype=bf16", "zero.stage=3"});
  check_resumed(full, resumed);
}

TEST_CASE("resume: fp16 backing off from a too-large scale restores the hysteresis count", "[zero][resume][fp16]") {
  cr::test::TempDir dir;
  // 2^24 overflows fp16 gradients: with hysteresis 2 steps 1.. are skipped and the scale halves
  // from step 2 on until it fits, across the checkpoint at step 5, whose hysteresis count
  // decides whether step 6's overflow backs off.
  const auto [full, resumed] =
      full_and_resumed(dir.path(), {"precision.dtype=fp16", "precision.initial_scale=16777216", "zero.stage=3"});
  REQUIRE(full.steps.size() == 10);
  // On this data steps 1-6 overflow; from step 7 on 2^19 fits. Steps 1 and 2 run at 2^24
  // (hysteresis), then every overflow halves: step k at 2^(26 - k) up to step 7.
  for (size_t i = 0; i < 10; ++i) {
    INFO("step " << i + 1 << " scale " << full.steps[i].loss_scale << " skipped " << full.steps[i].skipped);
    CHECK(full.steps[i].skipped == (i < 6));
    const int halvings = std::clamp(static_cast<int>(i) - 1, 0, 5);
    CHECK(full.steps[i].loss_scale == 16777216.0 / std::pow(2.0, halvings));
  }
  check_resumed(full, resumed);
}

TEST_CASE("resume: fp16 continues bit for bit, loss scale and its counters included", "[zero][resume][fp16]") {
  cr::test::TempDir dir;
  // growth_interval 3: the scale grows after steps 3, 6 and 9, so the checkpoint at step 5 is
  // taken with the growth count at 2, which the resumed run must restore to grow at step 6.
  const auto [full, resumed] =
      full_and_resumed(dir.path(), {"precision.dtype=fp16", "precision.initial_scale=256",
                                    "precision.growth_interval=3", "zero.stage=2"});
  REQUIRE(full.steps.size() == 10);
  for (size_t i = 0; i < 10; ++i) {
    INFO("step " << i + 1);
    CHECK_FALSE(full.steps[i].skipped);
    CHECK(full.steps[i].loss_scale == 256.0 * std::pow(2.0, static_cast<double>(i / 3)));
  }
  check_resumed(full, resumed);
}

TEST_CASE("resume: a ZeRO stage 3 checkpoint resumes at stage 1 bit for bit", "[zero][resume]") {
  cr::test::TempDir dir;
  const std::vector<std::string> common = {"precision.dtype=bf16", "checkpoint.every=5"};
  auto with = [&](std::vector<std::string> more) {
    auto all = common;
    all.insert(all.end(), more.begin(), more.end());
    return all;
  };
  const auto full = run_training(zero_config(dir.path() / "full", "llama-tiny", with({"zero.stage=0"})));
  run_training(zero_config(dir.path() / "split", "llama-tiny", with({"zero.stage=3", "train.steps=5"})));
  const auto resumed = run_training(zero_config(dir.path() / "split", "llama-tiny", with({"zero.stage=1"})));
  check_resumed(full, resumed);
}

// =============================================================================================
// Mixed precision without fp32 master weights (precision.master_weights: false)

TEST_CASE("without master weights, stages 1-3 still train bitwise like stage 0", "[zero][train]") {
  check_stages_bitwise("gpt2-tiny", "bf16", {"precision.master_weights=false"});
}

TEST_CASE("without master weights, no fp32 copy is held and plan predicts the state exactly", "[zero][memory]") {
  cr::test::TempDir dir;
  for (int stage : {0, 3}) {
    INFO("bf16 stage " << stage);
    const auto config = zero_config(dir.path() / std::to_string(stage), "gpt2-tiny",
                                    {"precision.dtype=bf16", "precision.master_weights=false", "train.steps=2",
                                     "zero.stage=" + std::to_string(stage)});
    const auto summary = run_training(config);
    const StateBytes& measured = summary.steps.back().state;
    const MemoryEstimate predicted = estimate_memory(model_spec_from_config(config.model), config, 1);
    CHECK(measured.master_weights == 0);
    CHECK(measured.parameters == predicted.parameters);
    CHECK(measured.gradients == predicted.gradients);
    CHECK(measured.optimizer_states == predicted.optimizer_states);
    CHECK(measured.total() == predicted.StateBytes::total());
    // 2 (bf16 weights) + 4 (fp32 gradients) + 8 (moments) bytes per parameter at stage 0.
    if (stage == 0) CHECK(measured.total() == 14 * summary.parameters);
    CHECK(all_finite_losses(summary));
  }
}

TEST_CASE("resume: without master weights a stage 3 bf16 run continues bit for bit", "[zero][resume]") {
  cr::test::TempDir dir;
  const auto [full, resumed] =
      full_and_resumed(dir.path(), {"precision.dtype=bf16", "precision.master_weights=false", "zero.stage=3"});
  check_resumed(full, resumed);
}
