// Data parallelism against the single-process reference, run under mpirun with 2 and 4 ranks:
// every rank trains the reference alone, then the data-parallel job, and compares.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include <torch/torch.h>

#include "core/config.h"
#include "core/log.h"
#include "core/trainer.h"
#include "parallel/mpi_communicator.h"

using namespace cr;
namespace fs = std::filesystem;

namespace {

Communicator* g_world = nullptr;

// The same tiny GPT-2 for every layout; the global batch of 8 splits over 1, 2 or 4 ranks.
Config dp_config(const fs::path& run_dir, std::vector<std::string> overrides) {
  const std::string yaml = R"(
model: {preset: gpt2-tiny}
data: {format: synthetic, seq_len: 32}
train: {micro_batch_size: 1, global_batch_size: 8, steps: 6, log_every: 100, eval_every: 3, eval_batches: 4,
        seed: 11, clip_grad_norm: 0.5}
optimizer: {lr: 3.0e-3}
lr_schedule: {warmup_steps: 2, min_lr: 1.0e-4}
checkpoint: {every: 0, save_final: false}
runtime: {threads: 1, progress_bar: false, run_dir: RUN_DIR}
)";
  std::string text = yaml;
  text.replace(text.find("RUN_DIR"), 7, run_dir.string());
  overrides.push_back("train.peak_flops=1.0e9");
  return load_config_text(text, "dp-test", overrides);
}

fs::path rank_dir(const std::string& name) {
  return fs::temp_directory_path() / ("cr-test-dp-" + name + "-" + std::to_string(getppid()) + "-" +
                                      std::to_string(g_world->rank()));
}

// Same value on every rank?
bool identical_across_ranks(uint32_t value) {
  auto t = torch::tensor({static_cast<int64_t>(value)}, torch::kLong);
  auto high = t.clone(), low = -t;
  g_world->all_reduce(high, ReduceOp::Max);
  g_world->all_reduce(low, ReduceOp::Max);
  return high.item<int64_t>() == -low.item<int64_t>();
}

void check_against_single_process(const std::vector<std::string>& overrides) {
  const auto dir = rank_dir("ref");
  const auto reference = run_training(dp_config(dir / "single", overrides), nullptr);
  const auto parallel = run_training(dp_config(dir / "dp", overrides), g_world);
  REQUIRE(parallel.losses.size() == reference.losses.size());
  CHECK(parallel.data_parallel_size == g_world->size());
  for (size_t i = 0; i < reference.losses.size(); ++i) {
    INFO("step " << i + 1 << " on " << g_world->size() << " ranks");
    CHECK(std::abs(parallel.losses[i] - reference.losses[i]) < 1e-5);
  }
  REQUIRE(parallel.val_losses.size() == reference.val_losses.size());
  for (size_t i = 0; i < reference.val_losses.size(); ++i) {
    CHECK(std::abs(parallel.val_losses[i].second - reference.val_losses[i].second) < 1e-5);
  }
  CHECK(identical_across_ranks(parallel.parameters_crc32));
  fs::remove_all(dir);
}

TEST_CASE("gradient all-reduces start during backward, bucket by bucket", "[dp]") {
  const auto dir = rank_dir("overlap");
  // Buckets of about 4 KiB: a tiny model still spreads over many of them.
  const auto summary = run_training(dp_config(dir, {"parallel.bucket_mb=0.004", "train.steps=2"}), g_world);
  INFO(summary.buckets_overlapped << " of " << summary.gradient_buckets << " buckets");
  CHECK(summary.gradient_buckets > 4);
  // All but the last bucket (the tied embedding, whose gradient completes last) start early.
  CHECK(summary.buckets_overlapped >= summary.gradient_buckets - 1);
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("data parallel losses equal the single-process run, one micro-batch per rank", "[dp]") {
  // 8 sequences: 2 ranks x 4 accumulated micro-batches, or 4 ranks x 2.
  check_against_single_process({});
}

TEST_CASE("data parallel losses equal the single-process run with two-sequence micro-batches", "[dp]") {
  check_against_single_process({"train.micro_batch_size=2"});
}

TEST_CASE("a data-parallel checkpoint resumes to the same losses", "[dp]") {
  const auto dir = rank_dir("resume");
  // One shared directory: rank 0 writes, every rank reads.
  auto shared = fs::temp_directory_path() / ("cr-test-dp-resume-" + std::to_string(getppid()));
  if (g_world->rank() == 0) fs::remove_all(shared);
  g_world->barrier();
  const auto full = run_training(dp_config(shared / "full", {}), g_world);
  run_training(dp_config(shared / "split", {"train.steps=3", "checkpoint.every=3", "lr_schedule.decay_steps=6"}),
               g_world);
  const auto resumed = run_training(dp_config(shared / "split", {"lr_schedule.decay_steps=6"}), g_world);
  REQUIRE(resumed.first_step == 3);
  REQUIRE(resumed.losses.size() == 3);
  const auto full_fixed = run_training(dp_config(shared / "full-fixed", {"lr_schedule.decay_steps=6"}), g_world);
  for (size_t i = 0; i < 3; ++i) CHECK(resumed.losses[i] == full_fixed.losses[3 + i]);
  CHECK(full.losses.size() == 6);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
  fs::remove_all(dir);
}

TEST_CASE("ZeRO stage 1 gives the same losses and weights as stage 0, bit for bit", "[dp][zero]") {
  const auto dir = rank_dir("zero1");
  const std::vector<std::string> common = {"train.steps=8", "checkpoint.save_final=false"};
  auto stage1 = common;
  stage1.push_back("zero.stage=1");
  const auto replicated = run_training(dp_config(dir / "stage0", common), g_world);
  const auto sharded = run_training(dp_config(dir / "stage1", stage1), g_world);
  REQUIRE(sharded.losses.size() == replicated.losses.size());
  for (size_t i = 0; i < sharded.losses.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(sharded.losses[i] == replicated.losses[i]);
  }
  CHECK(sharded.parameters_crc32 == replicated.parameters_crc32);
  // Each rank holds its shard of the moments: 1/N of them, up to rounding of the shard sizes.
  const int64_t ranks = g_world->size();
  CHECK(sharded.optimizer_state_bytes <= (replicated.optimizer_state_bytes / 8 + ranks - 1) / ranks * 8);
  CHECK(sharded.optimizer_state_bytes * ranks >= replicated.optimizer_state_bytes);
  CHECK(identical_across_ranks(sharded.parameters_crc32));
  fs::remove_all(dir);
}

TEST_CASE("a ZeRO-1 checkpoint resumes bit for bit and loads without sharding", "[dp][zero]") {
  auto shared = fs::temp_directory_path() / ("cr-test-dp-zero-resume-" + std::to_string(getppid()));
  if (g_world->rank() == 0) fs::remove_all(shared);
  g_world->barrier();
  const std::vector<std::string> fixed = {"zero.stage=1", "lr_schedule.decay_steps=6"};
  auto first_half = fixed;
  first_half.insert(first_half.end(), {"train.steps=3", "checkpoint.every=3"});
  const auto full = run_training(dp_config(shared / "full", fixed), g_world);
  run_training(dp_config(shared / "split", first_half), g_world);
  auto second_half = fixed;
  second_half.push_back("checkpoint.save_final=true");
  const auto resumed = run_training(dp_config(shared / "split", second_half), g_world);
  REQUIRE(resumed.first_step == 3);
  REQUIRE(resumed.losses.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(resumed.losses[i] == full.losses[3 + i]);
  // The same checkpoint, read by replicated data parallelism (stage 0): whole tensors on disk.
  const auto replicated = run_training(
      dp_config(shared / "split", {"lr_schedule.decay_steps=6", "train.steps=7", "checkpoint.save_final=false"}),
      g_world);
  CHECK(replicated.first_step == 6);
  CHECK(replicated.losses.size() == 1);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
}

int main(int argc, char** argv) {
  auto world = mpi_world(60.0);
  g_world = world.get();
  set_log_rank(world->rank(), world->size());
  const int result = Catch::Session().run(argc, argv);
  world.reset();
  mpi_finalize();
  return result;
}
