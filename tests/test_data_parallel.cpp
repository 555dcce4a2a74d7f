// Data parallelism against the single-process reference, run under mpirun with 2 and 4 ranks:
// every rank trains the reference alone, then the data-parallel job, and compares.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/base/log.h"
#include "core/plan/plan.h"
#include "core/train/model_factory.h"
#include "core/checkpoint/tensor_slices.h"
#include "core/formats/safetensors.h"
#include "core/train/rank_agreement.h"
#include "core/train/trainer.h"
#include "memory/flat_parameters.h"
#include "memory/zero_strategy.h"
#include "models/causal_lm.h"
#include "parallel/parallel_context.h"
#include "parallel/mpi_communicator.h"
#include "tests/layout_training.h"
#include "tests/mpi_session.h"
#include "tests/run_config.h"

using namespace cr;
using namespace cr::test;
namespace fs = std::filesystem;

namespace {

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
  return test::run_config(yaml, run_dir, std::move(overrides), "dp-test");
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
  INFO(summary.gradients.started_during_backward << " of " << summary.gradients.buckets << " buckets");
  CHECK(summary.gradients.buckets > 4);
  // All but the last bucket (the tied embedding, whose gradient completes last) start early.
  CHECK(summary.gradients.started_during_backward >= summary.gradients.buckets - 1);
  fs::remove_all(dir);
}


// Trains the same job at ZeRO stages 0-3 and compares every step's loss and gradient norm with
// stage 0's: `exact` demands bit equality, otherwise 1e-6 relative.
void check_stages_match_stage_0(const fs::path& dir, std::vector<std::string> overrides, bool exact) {
  overrides.push_back("train.steps=10");
  overrides.push_back("train.clip_grad_norm=0.05");  // active at every step
  overrides.push_back("parallel.bucket_mb=0.004");
  const auto stage0 = run_training(dp_config(dir / "stage0", overrides), g_world);
  for (const auto& grad : stage0.steps) REQUIRE(grad.grad_norm > 0.05);
  for (int stage = 1; stage <= 3; ++stage) {
    auto with_stage = overrides;
    with_stage.push_back("zero.stage=" + std::to_string(stage));
    const auto sharded = run_training(dp_config(dir / ("stage" + std::to_string(stage)), with_stage), g_world);
    REQUIRE(sharded.steps.size() == stage0.steps.size());
    for (size_t i = 0; i < stage0.steps.size(); ++i) {
      INFO("stage " << stage << ", step " << i + 1 << " on " << g_world->size() << " ranks");
      if (exact || stage == 1) {
        CHECK(sharded.steps[i].loss == stage0.steps[i].loss);
        CHECK(sharded.steps[i].grad_norm == stage0.steps[i].grad_norm);
      } else {
        CHECK(sharded.steps[i].loss == Approx(stage0.steps[i].loss).epsilon(1e-6));
        CHECK(sharded.steps[i].grad_norm == Approx(stage0.steps[i].grad_norm).epsilon(1e-6));
      }
    }
    if (exact || stage == 1) CHECK(sharded.parameters_crc32 == stage0.parameters_crc32);
    CHECK(identical_across_ranks(sharded.parameters_crc32));
  }
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("ZeRO stages 1-3 reduce exactly as stage 0: bit for bit with one micro-batch per rank", "[dp][zero]") {
  // 8 sequences per step: each rank runs one micro-batch of 8 / N.
  const std::string micro = "train.micro_batch_size=" + std::to_string(8 / g_world->size());
  check_stages_match_stage_0(rank_dir("zero-exact"), {micro}, /*exact=*/true);
  check_stages_match_stage_0(rank_dir("zero-exact-bf16"), {micro, "precision.dtype=bf16"}, /*exact=*/true);
}

TEST_CASE("ZeRO stages 2-3 with gradient accumulation stay within 1e-6 of stage 0", "[dp][zero]") {
  // Stages 0-1 add the micro-batches up locally and average once; stages 2-3 hold no whole
  // gradient, so they average every micro-batch and add the averages: the same sum, associated
  // differently, which moves the last bits (stage 1 stays bit for bit).
  check_stages_match_stage_0(rank_dir("zero-accumulate"), {"train.micro_batch_size=1"}, /*exact=*/false);
}

TEST_CASE("each rank's training state is what plan predicts, at every stage and precision", "[dp][zero]") {
  const auto dir = rank_dir("zero-memory");
  for (const std::string dtype : {"fp32", "bf16"}) {
    for (int stage = 0; stage <= 3; ++stage) {
      const Config config = dp_config(dir, {"train.steps=2", "parallel.bucket_mb=0.004", "precision.dtype=" + dtype,
                                            "zero.stage=" + std::to_string(stage), "train.eval_every=0"});
      const auto summary = run_training(config, g_world);
      const StateBytes measured = summary.steps.back().state;
      const MemoryEstimate planned = estimate_memory(model_spec_from_config(config.model), config, g_world->size());
      INFO(dtype << " stage " << stage << " rank " << g_world->rank() << " of " << g_world->size());
      // plan describes rank 0, which holds the largest shard; the others are within a few elements.
      if (g_world->rank() == 0) {
        CHECK(measured.parameters == planned.parameters);
        CHECK(measured.master_weights == planned.master_weights);
        CHECK(measured.gradients == planned.gradients);
        CHECK(measured.optimizer_states == planned.optimizer_states);
      }
      CHECK(std::abs(measured.total() - planned.StateBytes::total()) <= 0.05 * planned.StateBytes::total());
      if (g_world->rank() == 0) {
        std::printf("state bytes %d ranks %s stage %d: parameters %lld master %lld gradients %lld optimizer %lld\n",
                    g_world->size(), dtype.c_str(), stage, static_cast<long long>(measured.parameters),
                    static_cast<long long>(measured.master_weights), static_cast<long long>(measured.gradients),
                    static_cast<long long>(measured.optimizer_states));
      }
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("an fp16 overflow on one rank skips the step on every rank and lowers the scale", "[dp][zero]") {
  const auto dir = rank_dir("fp16-overflow");
  // The last rank's gradient gets an infinity at step 3.
  const std::string inject = std::to_string(g_world->size() - 1) + ":3";
  setenv("COLOSSAL_RUN_INF_GRAD_AT_STEP", inject.c_str(), 1);
  const auto summary = run_training(
      dp_config(dir, {"precision.dtype=fp16", "precision.hysteresis=1", "zero.stage=2", "train.eval_every=0"}),
      g_world);
  unsetenv("COLOSSAL_RUN_INF_GRAD_AT_STEP");
  REQUIRE(summary.steps.size() == 6);
  for (const auto& m : summary.steps) {
    INFO("step " << m.step << " on rank " << g_world->rank());
    CHECK(m.skipped == (m.step == 3));
    CHECK(m.loss_scale == (m.step <= 3 ? 65536.0 : 32768.0));
    CHECK(std::isfinite(m.loss));
  }
  CHECK(identical_across_ranks(summary.parameters_crc32));
  fs::remove_all(dir);
}

TEST_CASE("a ZeRO-3 checkpoint resumes on half the ranks (4 -> 2, 2 -> 1) at stage 1", "[dp][zero]") {
  auto shared = fs::temp_directory_path() / ("cr-test-dp-reshard-" + std::to_string(getppid()));
  if (g_world->rank() == 0) fs::remove_all(shared);
  g_world->barrier();
  const std::vector<std::string> fixed = {"lr_schedule.decay_steps=6", "train.eval_every=0"};
  auto first_half = fixed;
  first_half.insert(first_half.end(), {"zero.stage=3", "train.steps=3", "checkpoint.every=3"});
  // Every rank count resumes bit for bit at its own size; the 2-rank continuation reduces in a
  // different order than 4 ranks, so it matches the 4-rank run to rounding.
  auto full = fixed;
  full.push_back("zero.stage=3");
  const auto reference = run_training(dp_config(shared / "full", full), g_world);
  run_training(dp_config(shared / "split", first_half), g_world);
  const int half = std::max(1, g_world->size() / 2);
  auto group = g_world->split(g_world->rank() < half ? 0 : -1, g_world->rank(), "half");
  if (group) {
    auto second_half = fixed;
    second_half.push_back("zero.stage=1");
    const auto resumed = run_training(dp_config(shared / "split", second_half), group.get());
    CHECK(resumed.data_parallel_size == half);
    REQUIRE(resumed.first_step == 3);
    REQUIRE(resumed.losses.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      INFO("step " << i + 4);
      CHECK(std::abs(resumed.losses[i] - reference.losses[3 + i]) < 1e-5);
    }
  }
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
}

TEST_CASE("ZeRO-3 checkpoints resume bit for bit, fp32 and fp16 (loss scale included)", "[dp][zero]") {
  auto shared = fs::temp_directory_path() / ("cr-test-dp-zero3-resume-" + std::to_string(getppid()));
  for (const std::string dtype : {"fp32", "fp16"}) {
    if (g_world->rank() == 0) fs::remove_all(shared);
    g_world->barrier();
    // A growth interval of 2 makes the fp16 scale change across the checkpoint.
    const std::vector<std::string> fixed = {"zero.stage=3", "lr_schedule.decay_steps=6", "train.eval_every=0",
                                            "precision.dtype=" + dtype, "precision.growth_interval=2"};
    const auto full = run_training(dp_config(shared / "full", fixed), g_world);
    auto first_half = fixed;
    first_half.insert(first_half.end(), {"train.steps=3", "checkpoint.every=3"});
    run_training(dp_config(shared / "split", first_half), g_world);
    const auto resumed = run_training(dp_config(shared / "split", fixed), g_world);
    REQUIRE(resumed.first_step == 3);
    REQUIRE(resumed.steps.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      INFO(dtype << " step " << i + 4);
      CHECK(resumed.steps[i].loss == full.steps[3 + i].loss);
      CHECK(resumed.steps[i].loss_scale == full.steps[3 + i].loss_scale);
    }
    CHECK(resumed.parameters_crc32 == full.parameters_crc32);
  }
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
}

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

TEST_CASE("the parallel context splits the world into the mesh's groups", "[dp][engine]") {
  const int n = g_world->size();
  std::vector<MeshShape> shapes(1);
  shapes[0].data = n;
  if (n % 2 == 0) {
    MeshShape tensor;
    tensor.data = n / 2;
    tensor.tensor = 2;
    MeshShape sequence;
    sequence.data = n / 2;
    sequence.sequence = 2;
    shapes.push_back(tensor);
    shapes.push_back(sequence);
  }
  for (const auto& shape : shapes) {
    const ProcessMesh mesh(shape, n);
    INFO(mesh.describe());
    const ParallelContext context(mesh, g_world);
    const int me = g_world->rank();
    for (const Axis axis : kAllAxes) {
      const auto names = mesh_axes_of(axis);
      INFO(axis_name(axis));
      const auto expected = mesh.groups(names)[mesh.color(me, names)];
      CHECK(context.size(axis) == static_cast<int>(expected.size()));
      CHECK(context.rank(axis) == mesh.key(me, names));
      Communicator* group = context.host_group(axis);
      if (expected.size() == 1) {
        CHECK(group == nullptr);
      } else {
        REQUIRE(group != nullptr);
        CHECK(group->world_ranks() == expected);
        CHECK(group->rank() == context.rank(axis));
        CHECK(context.device_group(axis) == group);  // CPU: the host group carries tensors
      }
    }
    CHECK(context.control() == g_world);
  }
}

TEST_CASE("init by shard: each rank creates only its share, bit for bit the single-process weights", "[dp][engine]") {
  for (const std::string preset : {"gpt2-tiny", "opt-tiny", "llama-tiny"}) {
    const ModelSpec spec = find_model_preset(preset).spec;
    const auto whole_model = build_model(spec, /*seed=*/29);
    FlatParameters whole(*whole_model, torch::kFloat, whole_model->blocks());
    for (const int stage : {1, 3}) {
      for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
        INFO(preset << " stage " << stage << " " << c10::toString(dtype));
        auto skeleton = build_model_skeleton(spec);
        const InitialWeights initial(parameter_init_rules(*skeleton), 29);
        ZeroOptions options;
        options.stage = stage;
        options.compute_dtype = dtype;
        options.bucket_bytes = 1000;  // buckets, and so shards, cut through parameters
        ZeroStrategy strategy(module_parameters(*skeleton, skeleton->blocks()), &initial, spec.n_layer, options,
                              g_world);
        const ShardLayout& owned = strategy.parameters().owned();
        REQUIRE(owned.sharded());
        CHECK(owned.shard_numel() < whole.numel());
        CHECK(torch::equal(strategy.parameters().owned_weights(), owned.shard_of(whole.master())));
        CHECK(torch::equal(strategy.full_weights(), whole.master()));
      }
    }
  }
}

TEST_CASE("checkpoints move between DP N / ZeRO-3, DP N/2 / ZeRO-1 and one process, each way", "[dp][zero]") {
  auto shared = fs::temp_directory_path() / ("cr-test-dp-layouts-" + std::to_string(getppid()));
  if (g_world->rank() == 0) fs::remove_all(shared);
  g_world->barrier();
  const std::vector<std::string> fixed = {"lr_schedule.decay_steps=6", "train.eval_every=0"};
  const auto reference = run_training(dp_config(shared / "full", fixed), g_world);
  const int n = g_world->size(), half = std::max(1, n / 2);
  auto group = g_world->split(g_world->rank() < half ? 0 : -1, g_world->rank(), "half");
  // (writer, reader) layouts: ranks (0: one process without MPI) and ZeRO stage.
  struct Layout {
    int ranks;
    int stage;
  };
  const std::vector<std::pair<Layout, Layout>> moves = {
      {{n, 3}, {half, 1}}, {{n, 3}, {0, 0}}, {{half, 1}, {n, 3}}, {{0, 0}, {n, 3}}};
  for (size_t move = 0; move < moves.size(); ++move) {
    const auto [writer, reader] = moves[move];
    INFO("move " << move << ": " << writer.ranks << " ranks stage " << writer.stage << " -> " << reader.ranks
                 << " ranks stage " << reader.stage);
    const auto dir = shared / ("move" + std::to_string(move));
    auto run = [&](const Layout& layout, std::vector<std::string> overrides) -> std::optional<TrainSummary> {
      overrides.insert(overrides.end(), fixed.begin(), fixed.end());
      overrides.push_back("zero.stage=" + std::to_string(layout.stage));
      std::optional<TrainSummary> summary;
      if (layout.ranks == n) {
        summary = run_training(dp_config(dir, overrides), g_world);
      } else if (layout.ranks == half && layout.ranks > 0 && group) {
        summary = run_training(dp_config(dir, overrides), group.get());
      } else if (layout.ranks == 0 && g_world->rank() == 0) {
        summary = run_training(dp_config(dir, overrides), nullptr);
      }
      g_world->barrier();
      return summary;
    };
    run(writer, {"train.steps=3", "checkpoint.every=3"});
    if (g_world->rank() == 0 && writer.ranks > 0) {
      // Every writing rank's file holds its share: 3 fp32 values (weights, two moments) per element.
      int64_t total = 0;
      const auto step_dir = dir / "checkpoints" / "step_00000003";
      for (int r = 0; r < writer.ranks; ++r) {
        const cr::SafetensorsFile file((step_dir / slice_file_name(r, writer.ranks)).string());
        int64_t bytes = 0;
        for (const auto& name : file.names()) bytes += static_cast<int64_t>(file.get(name).nbytes);
        // Near-equal: each bucket's split is even to one element.
        CHECK(std::abs(bytes - 12 * reference.parameters / writer.ranks) <= 12 * reference.gradients.buckets);
        total += bytes;
      }
      CHECK(total == 12 * reference.parameters);
    }
    const auto resumed = run(reader, {});
    if (resumed) {
      REQUIRE(resumed->first_step == 3);
      REQUIRE(resumed->losses.size() == 3);
      for (size_t i = 0; i < 3; ++i) {
        INFO("step " << i + 4 << ": " << resumed->losses[i] << " vs " << reference.losses[3 + i]);
        CHECK(std::abs(resumed->losses[i] - reference.losses[3 + i]) < 1e-6);
      }
    }
  }
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
}

TEST_CASE("buckets smaller than the rank count leave some ranks nothing to write, and still save", "[dp][engine]") {
  auto shared = fs::temp_directory_path() / ("cr-test-dp-tiny-buckets-" + std::to_string(getppid()));
  if (g_world->rank() == 0) fs::remove_all(shared);
  g_world->barrier();
  // 10 bytes: two-element buckets, so with 3 or more ranks some shares are empty.
  const std::vector<std::string> tiny = {"parallel.bucket_mb=0.00001", "zero.stage=1", "train.eval_every=0",
                                         "train.global_batch_size=4", "lr_schedule.decay_steps=2"};
  auto first = tiny;
  first.insert(first.end(), {"train.steps=1", "checkpoint.every=1"});
  run_training(dp_config(shared, first), g_world);
  auto second = tiny;
  second.push_back("train.steps=2");
  const auto resumed = run_training(dp_config(shared, second), g_world);
  CHECK(resumed.first_step == 1);
  CHECK(resumed.losses.size() == 1);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
}

TEST_CASE("ranks that would resume from different checkpoints stop, naming the rank", "[dp][engine]") {
  const std::string config = "model: {preset: gpt2-tiny}\n";
  CHECK_NOTHROW(check_ranks_agree(g_world, {config, std::string("/runs/a/step_00000004"), 4}));
  const bool odd_one = g_world->rank() == 1;
  const StartupChoice choice{config, std::string(odd_one ? "/node1/step_00000002" : "/runs/a/step_00000004"),
                             odd_one ? 2 : 4};
  CHECK_THROWS_WITH(check_ranks_agree(g_world, choice),
                    Catch::Contains("rank 1 resumes from another checkpoint (step 2) than rank 0 (step 4)"));
  const StartupChoice other_config{odd_one ? config + "train: {steps: 3}\n" : config, std::nullopt, 0};
  CHECK_THROWS_WITH(check_ranks_agree(g_world, other_config), Catch::Contains("rank 1 has a different config"));
}

int main(int argc, char** argv) { return cr::test::run_mpi_session(argc, argv, cr::test::g_world); }
