// Gemini against ZeRO-3 on the same layout, under mpirun with 2 ranks (and each rank alone for
// DP 1): every placement policy trains to ZeRO-3's losses with gradient accumulation, auto keeps
// the emulated device under its budget, checkpoints move between the two, and configs that cannot
// work are named (memory that cannot be found: the cli:gemini_* tests).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "core/config/config.h"
#include "core/plan/gemini_plan.h"
#include "core/train/model_factory.h"
#include "core/train/trainer.h"
#include "memory/flat_parameters.h"
#include "tests/layout_training.h"
#include "tests/mpi_session.h"
#include "tests/run_config.h"

using namespace cr;
using namespace cr::test;
namespace fs = std::filesystem;
using Catch::Contains;

namespace {

// gpt2-tiny, 8 sequences a step in micro-batches of one: 8 / N micro-batches per rank. Chunks of
// 2^14 elements, so that the model spans several.
Config gemini_config(const fs::path& run_dir, std::vector<std::string> overrides) {
  const std::string yaml = R"(
model: {preset: gpt2-tiny}
data: {format: synthetic, seq_len: 32}
train: {micro_batch_size: 1, global_batch_size: 8, steps: 6, log_every: 100, eval_every: 0, seed: 5,
        clip_grad_norm: 0.0}
optimizer: {lr: 3.0e-3}
lr_schedule: {warmup_steps: 2, min_lr: 1.0e-4}
zero: {stage: 3, chunk_size_m: 0.015625}
checkpoint: {every: 0, save_final: false}
runtime: {threads: 1, progress_bar: false, run_dir: RUN_DIR}
)";
  return test::run_config(yaml, run_dir, std::move(overrides), "gemini-test");
}

std::vector<std::string> with(std::vector<std::string> overrides, const std::vector<std::string>& more) {
  overrides.insert(overrides.end(), more.begin(), more.end());
  return overrides;
}

std::string nvme_path() { return "zero.nvme_path=" + fs::temp_directory_path().string(); }

// Each policy's settings (cpu and static prefetch: host copies ahead on one rank, all-gathers ahead
// on two); auto under a budget small enough that chunks are evicted.
const std::vector<std::pair<std::string, std::vector<std::string>>> kPolicies = {
    {"cuda", {"zero.placement_policy=cuda"}},
    {"cpu", {"zero.placement_policy=cpu", "zero.max_prefetch=2"}},
    {"nvme", {"zero.placement_policy=cpu", "zero.nvme_offload_fraction=0.6", nvme_path()}},
    {"static", {"zero.placement_policy=static", "zero.shard_param_frac=0.5", "zero.offload_optim_frac=0.5",
                "zero.max_prefetch=1"}},
    {"auto", {"zero.placement_policy=auto", "runtime.device_memory_limit=4MiB", "zero.warmup_non_model_data_ratio=0.5",
              "zero.gpu_margin_mem_ratio=0.5", "zero.max_prefetch=2"}},
};

// prefetches: whether some chunk holds block parameters only (one the step does not gather at its start).
void check_policies_match_zero3(const std::string& name, Communicator* world, const std::vector<std::string>& common,
                                bool exact, bool prefetches = true) {
  const auto dir = rank_dir(name);
  const auto zero3 = run_training(gemini_config(dir / "zero3", common), world);
  for (const auto& [policy, settings] : kPolicies) {
    const auto gemini = run_training(gemini_config(dir / policy, with(common, settings)), world);
    REQUIRE(gemini.steps.size() == zero3.steps.size());
    for (size_t i = 0; i < zero3.steps.size(); ++i) {
      INFO(policy << " step " << i + 1 << " on " << (world ? world->size() : 1) << " ranks");
      if (exact) {
        CHECK(gemini.steps[i].loss == zero3.steps[i].loss);
      } else {
        CHECK(gemini.steps[i].loss == Approx(zero3.steps[i].loss).epsilon(1e-6));
        CHECK(gemini.steps[i].grad_norm == Approx(zero3.steps[i].grad_norm).epsilon(1e-6));
      }
    }
    if (exact) CHECK(gemini.parameters_crc32 == zero3.parameters_crc32);
    if (policy == "cpu") {  // prefetches from the second step on, in the first step's order
      CHECK(gemini.steps.front().tiers.prefetched == 0);
      CHECK((gemini.steps.back().tiers.prefetched > 0) == prefetches);
    }
  }
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("every placement trains to ZeRO-3's losses bit for bit with gradient accumulation, DP 1 and DP 2, "
          "and under tensor parallelism", "[gemini]") {
  // Without clipping nothing depends on how the gradient norm is summed: the reductions (pairs of
  // ranks), the accumulation (average, then add, per micro-batch) and Adam are ZeRO-3's.
  check_policies_match_zero3("gemini-dp1", nullptr, {}, /*exact=*/true);
  check_policies_match_zero3("gemini-dp2", g_world, {}, /*exact=*/true);
  check_policies_match_zero3("gemini-bf16", g_world, {"precision.dtype=bf16"}, /*exact=*/true);
  // With the tensor-parallel layers: each rank's chunks hold its slices, the norm sums over both.
  // Its 25,248 parameters per rank make two chunks, both holding embeddings or the final norm, so
  // both are gathered at the step's start and there is nothing to prefetch.
  check_policies_match_zero3("gemini-tp2", g_world, {"parallel.tensor=2"}, /*exact=*/true, /*prefetches=*/false);
}

TEST_CASE("with clipping, placements stay within 1e-6 of ZeRO-3", "[gemini]") {
  // The norm adds chunk partials where ZeRO-3 adds bucket partials: the last bits of the clip
  // factor differ, and with them the weights.
  check_policies_match_zero3("gemini-clip", g_world, {"train.clip_grad_norm=0.05"}, /*exact=*/false);
}

TEST_CASE("auto keeps the emulated device under its budget while training a model 3x its size", "[gemini]") {
  const auto dir = rank_dir("gemini-budget");
  const int64_t budget = 4 << 20;  // gpt2-mini's 0.9M parameters hold 14.7 MB of fp32 training state
  const std::vector<std::string> mini = {"train.steps=8", "model.preset=gpt2-mini"};
  const auto run = run_training(gemini_config(dir / "auto", with(kPolicies[4].second, mini)), nullptr);
  const auto zero3 = run_training(gemini_config(dir / "zero3", mini), nullptr);
  REQUIRE(run.steps.size() == 8);
  for (size_t i = 0; i < run.steps.size(); ++i) CHECK(run.steps[i].loss == zero3.steps[i].loss);  // evicting too
  const StateBytes& state = run.steps.back().state;
  CHECK(state.total() > 3 * budget);
  for (const auto& step : run.steps) {
    INFO("step " << step.step);
    CHECK(step.tiers.device_budget == budget);
    CHECK(step.tiers.device_peak <= budget);
    CHECK(step.tiers.device_peak > 0);
    CHECK(step.tiers.host_to_device > 0);
    CHECK(step.tiers.copies.seconds > 0);  // the copies are timed
  }
  CHECK(run.steps.back().loss < run.steps.front().loss);
  fs::remove_all(dir);
}

TEST_CASE("plan's bytes per tier are what the run's tiers hold", "[gemini]") {
  const auto dir = rank_dir("gemini-plan");
  for (const std::string policy : {"cuda", "cpu"}) {
    INFO(policy);
    const Config config = gemini_config(dir / policy, {"zero.placement_policy=" + policy, "train.steps=2"});
    const auto run = run_training(config, g_world);
    const auto entries = flat_layout(parameter_shapes(model_spec_from_config(config.model)));
    const TierBytes planned = gemini_tier_bytes(entries, g_world->size(), config, policy, 0);
    // Rank 0 holds the largest shards, as plan counts; the device also holds gathered chunks and
    // staging, which plan bounds by its two largest blocks.
    const TierUsage& measured = run.steps.back().tiers;
    if (g_world->rank() == 0) CHECK(measured.host_peak == planned.host);
    CHECK(measured.host_peak <= planned.host);
    CHECK(measured.device_peak <= planned.device);
    CHECK(measured.device_peak > 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("Gemini checkpoints load in ZeRO-3 runs and back, bit for bit", "[gemini]") {
  auto shared = fs::temp_directory_path() / ("cr-test-gemini-resume-" + std::to_string(getppid()));
  if (g_world->rank() == 0) fs::remove_all(shared);
  g_world->barrier();
  const std::vector<std::string> fixed = {"lr_schedule.decay_steps=6"};
  const auto full = run_training(gemini_config(shared / "full", fixed), g_world);
  const std::vector<std::string> half = {"train.steps=3", "checkpoint.every=3"};
  const std::vector<std::string> cpu = kPolicies[2].second;  // with the NVMe tier
  // Gemini writes, ZeRO-3 reads; then ZeRO-3 writes, Gemini reads.
  run_training(gemini_config(shared / "g2z", with(with(fixed, half), cpu)), g_world);
  const auto zero_resumed = run_training(gemini_config(shared / "g2z", fixed), g_world);
  run_training(gemini_config(shared / "z2g", with(fixed, half)), g_world);
  const auto gemini_resumed = run_training(gemini_config(shared / "z2g", with(fixed, cpu)), g_world);
  REQUIRE(zero_resumed.first_step == 3);
  REQUIRE(gemini_resumed.first_step == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(zero_resumed.losses[i] == full.losses[3 + i]);
    CHECK(gemini_resumed.losses[i] == full.losses[3 + i]);
  }
  CHECK(gemini_resumed.parameters_crc32 == full.parameters_crc32);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
}

TEST_CASE("placements the config cannot have are named", "[gemini]") {
  const fs::path dir = "unused";
  CHECK_THROWS_WITH(gemini_config(dir, {"zero.placement_policy=cpu", "zero.stage=2"}),
                    Contains("zero.placement_policy cpu shards like ZeRO-3: set zero.stage 3 (it is 2)"));
  CHECK_THROWS_WITH(gemini_config(dir, {"zero.placement_policy=cuda", "zero.offload_optim_frac=0.5"}),
                    Contains("apply to placement_policy static (cuda and cpu are its presets), not cuda"));
  CHECK_THROWS_WITH(gemini_config(dir, {"zero.placement_policy=static", "zero.offload_param_frac=0.5"}),
                    Contains("needs shard_param_frac 1 and offload_optim_frac 1"));
  CHECK_THROWS_WITH(gemini_config(dir, {"zero.placement_policy=cpu", "zero.gpu_margin_mem_ratio=0.5"}),
                    Contains("zero.gpu_margin_mem_ratio applies to placement_policy auto, not cpu"));
  CHECK_THROWS_WITH(gemini_config(dir, {"runtime.device_memory_limit=lots"}), Contains("runtime.device_memory_limit"));
  CHECK_THROWS_WITH(gemini_config(dir, {"zero.placement_policy=cpu", "zero.nvme_offload_fraction=0.5"}),
                    Contains("zero.nvme_offload_fraction 0.5 needs zero.nvme_path"));
  CHECK_THROWS_WITH(gemini_config(dir, {"zero.nvme_offload_fraction=0.5", nvme_path()}),
                    Contains("set zero.placement_policy"));
}

int main(int argc, char** argv) { return cr::test::run_mpi_session(argc, argv, cr::test::g_world); }
