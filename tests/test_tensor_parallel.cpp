// Tensor parallelism (1D) and split_gather sequence parallelism against the unsplit model, run
// under mpirun with 2 and 4 ranks: each rank builds the whole model too and compares its slices,
// losses and gradients, then trains whole layouts against the single-process run.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include <torch/torch.h>

#include "core/base/log.h"
#include "core/config/config.h"
#include "core/formats/safetensors.h"
#include "core/train/hf_export.h"
#include "core/train/hf_import.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "core/train/train_checkpoint.h"
#include "core/train/trainer.h"
#include "memory/flat_parameters.h"
#include "memory/zero_strategy.h"
#include "models/causal_lm.h"
#include "models/attention.h"
#include "models/lm_loss.h"
#include "models/ring_attention.h"
#include "models/tensor_parallel.h"
#include "parallel/mpi_communicator.h"
#include "parallel/parallel_context.h"
#include "tests/layout_training.h"
#include "tests/mpi_session.h"
#include "tests/shared_data.h"

using namespace cr;
using namespace cr::test;
namespace fs = std::filesystem;

namespace {

void check_layers_against_whole(const std::string& arch, bool sequence_parallel) {
  const ModelSpec spec = tiny_spec(arch);
  const TensorParallel tp = make_tensor_parallel(g_world, spec, sequence_parallel);
  auto whole = build_model(spec, /*seed=*/5);
  auto split = build_model(spec, /*seed=*/5, tp);
  auto whole_params = by_name(*whole);
  const auto slices = parameter_slices(*split);
  INFO(arch << " at tensor " << tp.size << (sequence_parallel ? " with split_gather" : ""));

  // Initialised by slice: each rank's part is exactly the whole model's, and split layers hold
  // 1/T of the unsplit ones (the vocabulary's near-equal parts add up to it).
  int64_t split_local = 0, split_whole = 0;
  for (const auto& item : split->named_parameters()) {
    const auto& slice = slices.at(item.key());
    CHECK(torch::equal(item.value(), slice_of(whole_params.at(item.key()), slice)));
    if (!slice.whole() && slice.parts == 1 && slice.length * tp.size == slice.global_shape[slice.dim]) {
      split_local += item.value().numel();
      split_whole += element_count(slice.global_shape);
    }
  }
  REQUIRE(split_local > 0);  // the layers really are split
  CHECK(split_local * tp.size == split_whole);

  check_loss_and_gradients(*whole, *split, 2);
  const auto tokens = torch::randint(0, spec.vocab_size, {2, 16}, torch::kLong);
  // Full logits (generation) from the vocabulary parts.
  torch::NoGradGuard no_grad;
  whole->eval();
  split->eval();
  CHECK(max_difference(whole->logits(tokens), split->logits(tokens)) < 1e-5);
}

TEST_CASE("tensor-parallel layers match the unsplit model: slices, loss, every gradient, logits", "[tp]") {
  for (const char* arch : {"gpt2", "opt", "llama"}) {
    check_layers_against_whole(arch, /*sequence_parallel=*/false);
    check_layers_against_whole(arch, /*sequence_parallel=*/true);
  }
}

TEST_CASE("the vocab-parallel loss equals the unsplit fused loss, gradients included", "[tp]") {
  const TensorParallel tp = make_tensor_parallel(g_world, tiny_spec("gpt2"), false);
  torch::manual_seed(9);
  const int64_t vocab = 1001, rows = 70, dim = 24;
  auto hidden = torch::randn({rows, dim}).requires_grad_();
  auto weight = torch::randn({vocab, dim}).mul_(0.5).requires_grad_();
  const auto targets = torch::randint(0, vocab, {rows}, torch::kLong);
  const auto [begin, end] = tensor_rows(vocab, tp);
  auto local_weight = weight.detach().narrow(0, begin, end - begin).clone().requires_grad_();
  auto local_hidden = hidden.detach().clone().requires_grad_();
  const auto expected = linear_cross_entropy_reference(hidden, weight, targets);
  const auto loss = vocab_parallel_cross_entropy(enter_tensor_region(local_hidden, tp), local_weight, begin, vocab,
                                                 targets, tp);
  CHECK(std::abs(loss.item<double>() - expected.item<double>()) < 1e-5);
  expected.backward();
  loss.backward();
  CHECK(max_difference(local_weight.grad(), weight.grad().narrow(0, begin, end - begin)) < 1e-6);
  CHECK(max_difference(local_hidden.grad(), hidden.grad()) < 1e-6);
}

TEST_CASE("tensor-parallel training equals the single-process run: GPT-2, OPT, LLaMA (GQA)", "[tp][train]") {
  const std::string size = std::to_string(g_world->size());
  for (const char* arch : {"gpt2", "opt", "llama"}) {
    check_training(arch, {"parallel.tensor=" + size});
    check_training(arch, {"parallel.tensor=" + size, "parallel.sequence.mode=split_gather"});
  }
}

TEST_CASE("tensor parallelism trains in bf16 and fp16 (loss scaling) like the single-process run", "[tp][train]") {
  const std::string size = std::to_string(g_world->size());
  for (const char* dtype : {"bf16", "fp16"}) {
    INFO(dtype);
    check_training_16bit("llama", {std::string("precision.dtype=") + dtype, "train.steps=6"},
                         {"parallel.tensor=" + size, "parallel.sequence.mode=split_gather"});
  }
}

TEST_CASE("all_to_all sequence parallelism equals the single-process run: GPT-2, OPT, LLaMA (GQA)", "[sp][train]") {
  for (const char* arch : {"gpt2", "opt", "llama"}) {
    check_training(arch, {"parallel.sequence.mode=all_to_all", "parallel.sequence.size=2"});
  }
  if (g_world->size() != 4) return;
  // Data 2 x sequence 2 with ZeRO-3 over the four ranks, and tensor 2 x sequence 2.
  for (const char* arch : {"gpt2", "llama"}) {
    check_training(arch, {"parallel.sequence.mode=all_to_all", "parallel.sequence.size=2", "zero.stage=3"});
  }
  for (const char* arch : {"gpt2", "opt"}) {
    check_training(arch, {"parallel.sequence.mode=all_to_all", "parallel.sequence.size=2", "parallel.tensor=2",
                          "zero.stage=1"});
  }
}

TEST_CASE("ring attention equals causal attention over the whole sequence, gradients included", "[sp][ring]") {
  const int P = g_world->size(), r = g_world->rank();
  torch::manual_seed(21);
  const int64_t B = 2, H = 4, H_kv = 2, T = 16 * P, D = 8;
  auto q = torch::randn({B, H, T, D}).requires_grad_();
  auto k = torch::randn({B, H_kv, T, D}).requires_grad_();
  auto v = torch::randn({B, H_kv, T, D}).requires_grad_();
  const auto weights = torch::randn({B, H, T, D});
  const auto positions = zigzag_positions(T, r, P);
  CHECK(positions.numel() == T / P);
  auto mine = [&](const torch::Tensor& x) { return x.detach().index_select(2, positions).clone().requires_grad_(); };
  auto q_local = mine(q), k_local = mine(k), v_local = mine(v);
  const auto expected = causal_attention(q, k, v, 0.0);
  const auto ring = ring_attention(q_local, k_local, v_local, g_world);
  CHECK(max_difference(ring, expected.index_select(2, positions)) < 1e-5);
  (expected * weights).sum().backward();
  (ring * weights.index_select(2, positions)).sum().backward();
  CHECK(max_difference(q_local.grad(), q.grad().index_select(2, positions)) < 1e-5);
  CHECK(max_difference(k_local.grad(), k.grad().index_select(2, positions)) < 1e-5);
  CHECK(max_difference(v_local.grad(), v.grad().index_select(2, positions)) < 1e-5);
}

TEST_CASE("ring_attn sequence parallelism equals the single-process run: GPT-2, OPT, LLaMA (GQA)", "[sp][ring][train]") {
  const std::string size = std::to_string(g_world->size());
  for (const char* arch : {"gpt2", "opt", "llama"}) {
    check_training(arch, {"parallel.sequence.mode=ring_attn", "parallel.sequence.size=" + size});
  }
}

TEST_CASE("ring_attn trains a sequence P times the per-rank length without whole attention scores", "[ring][.long]") {
  // Run by its own CTest entry at 8 ranks of 1024 tokens: one layer's whole scores would be
  // 4 heads x 8192^2 x 4 bytes = 1 GiB per sequence; a rank's block is 16 MiB, and a step
  // holds a few of them at once.
  const int P = g_world->size();
  const int64_t length = 1024 * P;
  const auto dir = rank_dir("ring-long");
  const auto summary = run_training(
      tp_config("llama", dir, {"parallel.sequence.mode=ring_attn", "parallel.sequence.size=" + std::to_string(P),
                               "data.seq_len=" + std::to_string(length), "model.max_seq_len=" + std::to_string(length),
                               "train.global_batch_size=1", "train.steps=2", "train.eval_every=0"}),
      g_world);
  REQUIRE(summary.losses.size() == 2);
  CHECK(std::isfinite(summary.losses.back()));
  const double whole_scores = 4.0 * static_cast<double>(length) * static_cast<double>(length) * 4.0;
  for (const auto& step : summary.steps) {
    INFO("peak " << step.peak_host_bytes << " after start-up " << summary.startup_peak_host_bytes);
    CHECK(static_cast<double>(step.peak_host_bytes - summary.startup_peak_host_bytes) < whole_scores / 4);
  }
  fs::remove_all(dir);
}

TEST_CASE("data x tensor parallel with ZeRO-1 and ZeRO-3 equals the single-process run", "[tp][train][zero]") {
  if (g_world->size() != 4) return;  // DP 2 x TP 2 needs four ranks; the np2 run covers TP alone
  for (const char* arch : {"gpt2", "llama"}) {
    check_training(arch, {"parallel.tensor=2", "zero.stage=1"});
    check_training(arch, {"parallel.tensor=2", "zero.stage=3"});
    check_training(arch, {"parallel.tensor=2", "zero.stage=3", "parallel.sequence.mode=split_gather",
                          "precision.dtype=fp32"});
  }
}

TEST_CASE("tensor-parallel checkpoints resume at another tensor size", "[tp][checkpoint]") {
  // TP N writes at step 3; one process (np2) or TP 2 x DP 2 (np4) continues to step 6, as the
  // uninterrupted single-process run does.
  const auto shared = shared_dir("reshard");
  const auto mine = rank_dir("reshard");
  const std::string size = std::to_string(g_world->size());
  const std::string checkpoints = "checkpoint.dir=" + (shared / "ckpt").string();
  const auto reference = run_training(tp_config("llama", mine / "single", {}), nullptr);
  run_training(tp_config("llama", mine / "writer", {"parallel.tensor=" + size, "train.steps=3",
                                                    "checkpoint.save_final=true", checkpoints}),
               g_world);
  const auto resumed_layout = g_world->size() == 4 ? std::vector<std::string>{"parallel.tensor=2", "zero.stage=2",
                                                                              checkpoints}
                                                   : std::vector<std::string>{checkpoints};
  const auto resumed = run_training(tp_config("llama", mine / "reader", resumed_layout),
                                    g_world->size() == 4 ? g_world : nullptr);
  CHECK(resumed.first_step == 3);
  check_losses(resumed, reference, 3, /*tolerance=*/1e-6);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
  fs::remove_all(mine);
}

TEST_CASE("Hugging Face weights load into tensor-parallel slices and export back bit for bit", "[tp][hf]") {
  const auto shared = shared_dir("hf");
  for (const char* arch : {"gpt2", "llama"}) {
    INFO(arch);
    const ModelSpec spec = tiny_spec(arch);
    const auto original = shared / arch / "original";
    if (g_world->rank() == 0) write_initial_hf_model(spec, /*seed=*/41, original);
    g_world->barrier();

    MeshShape shape;
    shape.tensor = g_world->size();
    const ParallelContext context(ProcessMesh(shape, g_world->size()), g_world);
    const TensorParallel tp = make_tensor_parallel(context.device_group(Axis::Tensor), spec, false);
    auto skeleton = build_model_skeleton(spec, tp);
    const ModuleParameters params = module_parameters(*skeleton, skeleton->blocks());
    const auto source = open_init_weights(original.string(), params.entries, spec);
    ZeroStrategy strategy(params, source.get(), spec.n_layer, ZeroOptions{}, nullptr,
                          context.host_group(Axis::Tensor));
    const Config config = tp_config(arch, shared / arch / "run", {"parallel.tensor=" + std::to_string(tp.size)});
    check_export_round_trip(config, strategy, spec, context, shared / arch, original);
  }
  if (g_world->rank() == 0) fs::remove_all(shared);
}

TEST_CASE("layouts that do not split the model fail naming the numbers", "[tp]") {
  ModelSpec spec = tiny_spec("llama");
  spec.n_kv_head = 4;
  spec.n_head = 12;
  CHECK_THROWS_WITH(check_tensor_split(spec, 8), Catch::Contains("n_head 12 is not divisible by tensor 8"));
  spec.n_head = 24;
  spec.n_kv_head = 3;
  CHECK_THROWS_WITH(check_tensor_split(spec, 2), Catch::Contains("n_kv_head 3 and tensor 2"));
  spec.n_kv_head = 2;
  spec.d_ff = 66;
  CHECK_THROWS_WITH(check_tensor_split(spec, 4), Catch::Contains("d_ff 66 is not divisible by tensor 4"));
  spec.vocab_size = 3;
  CHECK_THROWS_WITH(check_tensor_split(spec, 4), Catch::Contains("vocab_size 3 is less than tensor 4"));
  CHECK_THROWS_WITH(check_job_layout(tp_config("gpt2", rank_dir("dropout"), {"parallel.tensor=2", "model.dropout=0.1"}), 2),
                    Catch::Contains("tensor and sequence parallel layouts train without dropout"));
  // Checked before any rank starts (a failing multi-rank run ends the job, so it is not run here).
  const auto config = tp_config("gpt2", rank_dir("bad-seq"), {"parallel.tensor=4", "parallel.sequence.mode=split_gather",
                                                              "data.seq_len=34"});
  CHECK_THROWS_WITH(check_job_layout(config, 4), Catch::Contains("data.seq_len 34 is not divisible by parallel.tensor 4"));
  CHECK_THROWS_WITH(check_job_layout(tp_config("gpt2", rank_dir("bad-seq"), {"parallel.sequence.mode=split_gather"}), 4),
                    Catch::Contains("split_gather splits the sequence over the tensor group, but parallel.tensor is 1"));
  // all_to_all hands each sequence rank whole heads: 4 heads over 8 ranks, or 2 tensor ranks' 2 each over 4.
  const auto ulysses = [](int size, std::vector<std::string> more = {}) {
    more.push_back("parallel.sequence.mode=all_to_all");
    more.push_back("parallel.sequence.size=" + std::to_string(size));
    return tp_config("gpt2", rank_dir("bad-seq"), more);
  };
  CHECK_THROWS_WITH(check_job_layout(ulysses(8), 8),
                    Catch::Contains("all_to_all gives each sequence rank whole attention heads"));
  CHECK_THROWS_WITH(check_job_layout(ulysses(4, {"parallel.tensor=2"}), 8),
                    Catch::Contains("holds 2 query and 2 key/value heads"));
  CHECK_THROWS_WITH(check_job_layout(ulysses(1), 4), Catch::Contains("needs parallel.sequence.size of at least 2"));
  CHECK_THROWS_WITH(check_job_layout(ulysses(2, {"data.seq_len=33"}), 4),
                    Catch::Contains("data.seq_len 33 is not divisible by parallel.sequence.size 2"));
}

TEST_CASE("the tensor-parallel example config trains on tinyshakespeare", "[tp][data]") {
  const std::string data = std::string(CR_SHARED_DATA) + "/tinyshakespeare.txt";
  if (!test::shared_data_present({data})) return;
  // Every rank count runs it: tensor 2 with data parallelism over the rest.
  check_example_learns(std::string(CR_SOURCE_DIR) + "/configs/shakespeare_tensor_parallel.yaml", data, 60,
                       {"train.global_batch_size=16"});
}

}  // namespace

int main(int argc, char** argv) { return cr::test::run_mpi_session(argc, argv, cr::test::g_world); }
