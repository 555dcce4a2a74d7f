// Pipeline parallelism against the single-process run of the same model, seed and global batch,
// under mpirun with 2, 4 and 8 ranks: every schedule, stage partitions given and
// balanced, tied and untied embeddings, pipelines combined with data and tensor parallelism,
// 16-bit precision, checkpoints resumed at other pipeline sizes, and Hugging Face weights loaded
// stage by stage and exported from a pipeline checkpoint.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <filesystem>

#include "core/train/hf_import.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "core/train/stage_executor.h"
#include "core/train/trainer.h"
#include "memory/flat_parameters.h"
#include "memory/zero_strategy.h"
#include "models/causal_lm.h"
#include "parallel/parallel_context.h"
#include "tests/layout_training.h"
#include "tests/mpi_session.h"

using namespace cr;
using namespace cr::test;
namespace fs = std::filesystem;

namespace {

std::string size_of_world() { return std::to_string(g_world->size()); }

TEST_CASE("a pipeline over every rank trains like one process: GPT-2 and OPT (tied), LLaMA (untied)", "[pp]") {
  const std::string stages = "parallel.pipeline=" + size_of_world();
  const std::vector<std::string> deep = {"model.n_layer=" + std::to_string(2 * g_world->size())};
  for (const char* arch : {"gpt2", "opt", "llama"}) check_training(arch, {stages}, deep);
}

TEST_CASE("every schedule gives the single-process losses", "[pp]") {
  const std::string stages = "parallel.pipeline.size=" + size_of_world();
  const std::vector<std::string> deep = {"model.n_layer=" + std::to_string(2 * g_world->size())};
  check_training("gpt2", {stages, "parallel.pipeline.schedule=gpipe"}, deep);
  check_training("llama", {stages, "parallel.pipeline.schedule=1f1b"}, deep);
  // Two chunks per stage: the activations wrap from the last stage back to the first.
  check_training("gpt2", {stages, "parallel.pipeline.schedule=interleaved", "parallel.pipeline.chunks=2"}, deep);
  check_training("llama", {stages, "parallel.pipeline.schedule=interleaved", "parallel.pipeline.chunks=2"}, deep);
  // Backward split: weight gradients computed after the input's, in what would be bubbles.
  check_training("gpt2", {stages, "parallel.pipeline.schedule=zero_bubble"}, deep);
  check_training("llama", {stages, "parallel.pipeline.schedule=zero_bubble"}, deep);
}

TEST_CASE("a given stage partition and micro-batch count train like one process", "[pp]") {
  if (g_world->size() != 2) return;
  check_training("opt", {"parallel.pipeline.size=2", "parallel.pipeline.layers_per_stage=[3, 1]"},
                 {"model.n_layer=4"});
  // Four micro-batches of 2: the global batch, 8, follows from them.
  check_training("gpt2", {"parallel.pipeline.size=2", "parallel.pipeline.microbatches=4", "train.global_batch_size=0"},
                 {"train.micro_batch_size=2"});
}

TEST_CASE("activation checkpointing works inside pipeline stages", "[pp]") {
  const std::string stages = "parallel.pipeline=" + size_of_world();
  const std::vector<std::string> deep = {"model.n_layer=" + std::to_string(2 * g_world->size())};
  check_training("gpt2", {stages, "train.activation_checkpointing=full"}, deep);
  check_training("llama", {stages, "parallel.pipeline.schedule=zero_bubble", "train.activation_checkpointing=selective"},
                 deep);
}

TEST_CASE("pipelines compose with data and tensor parallelism", "[pp][composed]") {
  if (g_world->size() == 4) {
    check_training("gpt2", {"parallel.pipeline=2", "parallel.data=2", "zero.stage=1"});
    check_training("llama", {"parallel.pipeline=2", "parallel.data=2"});
    check_training("gpt2", {"parallel.pipeline=2", "parallel.tensor=2"});
    check_training("llama", {"parallel.pipeline=2", "parallel.tensor=2", "parallel.sequence.mode=split_gather"});
  }
  if (g_world->size() == 8) {
    check_training("gpt2", {"parallel.pipeline=2", "parallel.tensor=2", "parallel.data=2", "zero.stage=1"});
    check_training("opt", {"parallel.pipeline=2", "parallel.tensor=2", "parallel.data=2"});
  }
}

TEST_CASE("pipelines train in bf16 and fp16, the loss scale agreed across stages", "[pp]") {
  // The same matmuls in the same order: the pipeline changes nothing but where they run.
  for (const char* dtype : {"bf16", "fp16"}) {
    INFO(dtype);
    const auto dir = rank_dir("precision");
    const std::vector<std::string> common{std::string("precision.dtype=") + dtype, "train.steps=6"};
    auto layout = common;
    layout.push_back("parallel.pipeline=" + size_of_world());
    layout.push_back("model.n_layer=" + size_of_world());
    auto single = common;
    single.push_back("model.n_layer=" + size_of_world());
    const auto reference = run_training(tp_config("gpt2", dir / "single", single), nullptr);
    const auto parallel = run_training(tp_config("gpt2", dir / "pp", layout), g_world);
    check_losses(parallel, reference, 0, 1e-3);
    fs::remove_all(dir);
  }
}

TEST_CASE("pipeline checkpoints resume at another pipeline size", "[pp][checkpoint]") {
  if (g_world->size() != 4) return;
  // PP 2 x DP 2 writes at step 3; one process and PP 4 continue to step 10 as the uninterrupted
  // single-process run does.
  const auto shared = shared_dir("pp-reshard");
  const auto mine = rank_dir("pp-reshard");
  const std::string checkpoints = "checkpoint.dir=" + (shared / "ckpt").string();
  const std::vector<std::string> model = {"model.n_layer=4", "train.steps=10"};
  auto with = [&](const std::vector<std::string>& layout) {
    std::vector<std::string> overrides = model;  // first: the layout's train.steps wins
    overrides.insert(overrides.end(), layout.begin(), layout.end());
    return overrides;
  };
  const auto reference = run_training(tp_config("gpt2", mine / "single", with({})), nullptr);
  run_training(tp_config("gpt2", mine / "writer", with({"parallel.pipeline=2", "parallel.data=2", "train.steps=3",
                                                        "checkpoint.save_final=true", checkpoints})),
               g_world);
  // One process reads the same checkpoint first (each rank its own copy of the run).
  const auto single = run_training(tp_config("gpt2", mine / "one", with({checkpoints})), nullptr);
  CHECK(single.first_step == 3);
  check_losses(single, reference, 3, /*tolerance=*/1e-6);
  const auto four = run_training(tp_config("gpt2", mine / "four", with({"parallel.pipeline=4", checkpoints,
                                                                        "checkpoint.save_final=false"})),
                                 g_world);
  CHECK(four.first_step == 3);
  check_losses(four, reference, 3, /*tolerance=*/1e-6);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
  fs::remove_all(mine);
}

TEST_CASE("Hugging Face weights load stage by stage and a pipeline checkpoint exports bit for bit", "[pp][hf]") {
  const auto shared = shared_dir("pp-hf");
  const int stages = g_world->size();
  for (const char* arch : {"gpt2", "llama"}) {  // tied and untied output embeddings
    INFO(arch);
    const Config config = tp_config(arch, shared / arch / "run",
                                    {"parallel.pipeline=" + size_of_world(), "model.n_layer=" + std::to_string(2 * stages)});
    const ModelSpec spec = model_spec_from_config(config.model);
    const auto original = shared / arch / "original";
    if (g_world->rank() == 0) write_initial_hf_model(spec, /*seed=*/43, original);
    g_world->barrier();

    MeshShape shape;
    shape.pipeline = stages;
    const ParallelContext context(ProcessMesh(shape, stages), g_world);
    const StageLayout stage = stage_layout_for(config, spec, stages, context.rank(Axis::Pipeline));
    auto skeleton = build_model_skeleton(spec);
    const ModuleParameters params = module_parameters(*skeleton, skeleton->blocks(), owned_by_stage(*skeleton, stage));
    const auto source = open_init_weights(original.string(), params.entries, spec);
    ZeroStrategy strategy(params, source.get(), spec.n_layer, ZeroOptions{}, nullptr,
                          context.host_group(Axis::PipelineTensor));
    // Each stage holds its part only; together every parameter once (a tied embedding too).
    auto held = torch::tensor({strategy.numel()}, torch::kLong);
    g_world->all_reduce(held, ReduceOp::Sum);
    CHECK(held.item<int64_t>() == parameter_count(spec));
    CHECK(strategy.numel() < parameter_count(spec));
    check_export_round_trip(config, strategy, spec, context, shared / arch, original);
  }
  if (g_world->rank() == 0) fs::remove_all(shared);
}

TEST_CASE("layouts a pipeline cannot run fail before starting, naming the keys", "[pp]") {
  const auto config = [](std::vector<std::string> overrides) { return tp_config("gpt2", "unused", std::move(overrides)); };
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.pipeline=2", "zero.stage=2"}), 2),
                    Catch::Contains("zero.stage 2 with parallel.pipeline.size 2") &&
                        Catch::Contains("use zero.stage 0 or 1"));
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.pipeline=4"}), 4), Catch::Contains("pipeline 4 is more than n_layer 2"));
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.pipeline.size=2", "parallel.pipeline.schedule=interleaved",
                                             "parallel.pipeline.chunks=2"}), 2),
                    Catch::Contains("2 stages x 2 chunks need at least 4 blocks, but model.n_layer is 2"));
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.pipeline.size=2", "model.n_layer=4",
                                             "parallel.pipeline.layers_per_stage=[1, 2]"}), 2),
                    Catch::Contains("layers_per_stage sums to 3 blocks, but model.n_layer is 4"));
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.pipeline.size=2", "parallel.pipeline.microbatches=3"}), 2),
                    Catch::Contains("parallel.pipeline.microbatches 3 disagrees with train.global_batch_size 8"));
}

}  // namespace

int main(int argc, char** argv) { return cr::test::run_mpi_session(argc, argv, cr::test::g_world); }
