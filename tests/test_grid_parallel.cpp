// 2d and 2.5d tensor parallelism under mpirun: 2d on 4 ranks (a 2 x 2 grid), 2.5d on 8 (two
// stacked 2 x 2 grids, so the depth really splits the batch and copies the weights). Layers are
// checked as Colossal-AI checks its own: master tensors made alike on every rank, each rank's
// part cut out by its grid coordinates, forward outputs and input / weight / bias gradients
// compared with the unsplit computation; then whole models, and training against the
// single-process run, composed with data and pipeline parallelism, and checkpoints resumed in 1d
// and in one process.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <filesystem>

#include <torch/torch.h>

#include "core/train/mesh_layout.h"
#include "core/train/trainer.h"
#include "models/causal_lm.h"
#include "models/grid_parallel.h"
#include "models/lm_loss.h"
#include "models/norm.h"
#include "models/tensor_parallel.h"
#include "tests/layout_training.h"
#include "tests/mpi_session.h"

using namespace cr;
using namespace cr::test;
namespace fs = std::filesystem;

namespace {

// 4 ranks: 2d; 8 ranks: 2.5d of depth 2.
TensorGridShape world_grid() {
  const int size = g_world->size();
  return size == 8 ? tensor_grid_shape("2.5d", 8, 2) : tensor_grid_shape("2d", size, 1);
}

std::vector<std::string> world_layout() {
  const TensorGridShape shape = world_grid();
  return {"parallel.tensor.size=" + std::to_string(shape.size()), "parallel.tensor.mode=" + tensor_mode_name(shape.mode),
          "parallel.tensor.depth=" + std::to_string(shape.depth)};
}

// This rank's batch part and hidden column of a (B, ..., C) activation.
torch::Tensor local_part(const torch::Tensor& full, const TensorGrid& grid) {
  const int64_t width = full.size(-1) / grid.q();
  return grid_batch_part(full, grid).narrow(-1, width * grid.at.column, width).contiguous();
}

torch::Tensor leaf(const torch::Tensor& t) { return t.detach().clone().requires_grad_(); }

TEST_CASE("the grid's rank groups are the communicators' members", "[grid]") {
  const TensorGridShape shape = world_grid();
  const auto grid = make_tensor_grid(g_world, shape);
  const int rank = g_world->rank();
  CHECK(grid_rank(shape, grid->at) == rank);
  auto members = [](const std::shared_ptr<Communicator>& group) { return group->world_ranks(); };
  CHECK(members(grid->row) == grid_group(shape, rank, GridGroup::Row));
  CHECK(members(grid->column) == grid_group(shape, rank, GridGroup::Column));
  CHECK(members(grid->batch) == grid_group(shape, rank, GridGroup::Batch));
  CHECK(grid->row->rank() == grid->at.column);
  CHECK(grid->column->rank() == grid->at.row);
  CHECK(grid->batch->rank() == grid->batch_part());
  if (shape.depth > 1) {
    CHECK(members(grid->depth) == grid_group(shape, rank, GridGroup::Depth));
  } else {
    CHECK(!grid->depth);
  }
}

TEST_CASE("the grid linear layer (SUMMA) equals x W^T + b: output, input, weight and bias gradients", "[grid]") {
  const auto grid = make_tensor_grid(g_world, world_grid());
  const int64_t B = 2 * grid->batch_parts(), T = 3, in = 16, out = 24;
  for (const int64_t parts : {1, 3}) {
    INFO("fused parts " << parts);
    torch::manual_seed(11);  // the same master tensors on every rank
    auto X = torch::randn({B, T, in}).requires_grad_();
    auto W = torch::randn({parts * out, in}).requires_grad_();
    auto b = torch::randn({parts * out}).requires_grad_();
    const auto dY = torch::randn({B, T, parts * out});
    const auto Y = torch::matmul(X, W.t()) + b;
    (Y * dY).sum().backward();

    const ParameterSlice w_slice = grid_weight_slice(out, in, parts, *grid);
    const ParameterSlice b_slice = grid_hidden_slice({parts * out}, 0, parts, *grid);
    auto x = leaf(local_part(X, *grid));
    auto w = leaf(slice_of(W, w_slice));
    auto bias = leaf(slice_of(b, b_slice));
    sum_over_layers(w, *grid);
    sum_over_batch_copies(bias, *grid);
    const auto y = grid_linear(grid_gather_hidden(x, *grid), w, bias, parts, *grid);
    // Each part's columns of this rank's hidden column.
    auto columns = [&](const torch::Tensor& full) {
      auto t = grid_batch_part(full, *grid).reshape({-1, T, parts, out});
      return t.narrow(3, out / grid->q() * grid->at.column, out / grid->q()).reshape({-1, T, parts * out / grid->q()});
    };
    CHECK(max_difference(y, columns(Y.detach())) < 1e-5);
    (y * columns(dY)).sum().backward();
    CHECK(max_difference(x.grad(), local_part(X.grad(), *grid)) < 1e-5);
    CHECK(max_difference(w.grad(), slice_of(W.grad(), w_slice)) < 1e-5);
    CHECK(max_difference(bias.grad(), slice_of(b.grad(), b_slice)) < 1e-5);
  }
}

TEST_CASE("grid norms equal LayerNorm and RMSNorm over the whole hidden size, gradients included", "[grid]") {
  const TensorGridShape shape = world_grid();
  for (const char* arch : {"gpt2", "llama"}) {
    INFO(arch);
    const ModelSpec spec = tiny_spec(arch);
    const TensorParallel tp = make_tensor_parallel(g_world, spec, false, nullptr, false, shape);
    const int64_t C = spec.d_model;
    torch::manual_seed(12);
    auto X = torch::randn({2 * tp.grid->batch_parts(), 5, C}).requires_grad_();
    auto weight = (1 + 0.3 * torch::randn({C})).requires_grad_();
    auto bias = (0.2 * torch::randn({C})).requires_grad_();
    const auto dY = torch::randn(X.sizes());
    Norm whole(spec, C);
    Norm split(spec, C, tp);
    materialize_parameters(*whole, 0);
    materialize_parameters(*split, 0);
    const auto slice = grid_hidden_slice({C}, 0, 1, *tp.grid);
    {
      torch::NoGradGuard no_grad;
      whole->weight.copy_(weight);
      split->weight.copy_(slice_of(weight, slice));
      if (whole->bias.defined()) {
        whole->bias.copy_(bias);
        split->bias.copy_(slice_of(bias, slice));
      }
    }
    const auto Y = whole(X);
    (Y * dY).sum().backward();
    auto x = leaf(local_part(X, *tp.grid));
    const auto y = split(x);
    CHECK(max_difference(y, local_part(Y.detach(), *tp.grid)) < 1e-5);
    (y * local_part(dY, *tp.grid)).sum().backward();
    CHECK(max_difference(x.grad(), local_part(X.grad(), *tp.grid)) < 1e-5);
    CHECK(max_difference(split->weight.grad(), slice_of(whole->weight.grad(), slice)) < 1e-5);
    if (whole->bias.defined()) CHECK(max_difference(split->bias.grad(), slice_of(whole->bias.grad(), slice)) < 1e-5);
  }
}

TEST_CASE("the grid embedding and LM loss equal the unsplit fused loss, gradients included", "[grid]") {
  const auto grid = make_tensor_grid(g_world, world_grid());
  torch::manual_seed(13);
  const int64_t vocab = 1001, rows = 6 * grid->batch_parts(), dim = 24;  // 1001 pads to the grid's columns
  auto hidden = torch::randn({rows, dim}).requires_grad_();
  auto weight = torch::randn({vocab, dim}).mul_(0.5).requires_grad_();
  const auto targets = torch::randint(0, vocab, {rows}, torch::kLong);
  const auto expected = linear_cross_entropy_reference(hidden, weight, targets);
  expected.backward();
  const auto slice = grid_hidden_slice({vocab, dim}, 1, 1, *grid);
  auto h = leaf(local_part(hidden, *grid));
  auto w = leaf(slice_of(weight, slice));
  sum_over_batch_copies(w, *grid);
  const auto loss = grid_whole_loss(grid_cross_entropy(h, w, grid_batch_part(targets, *grid), vocab, *grid), *grid);
  CHECK(std::abs(loss.item<double>() - expected.item<double>()) < 1e-5);
  loss.backward();
  CHECK(max_difference(h.grad(), local_part(hidden.grad(), *grid)) < 1e-6);
  CHECK(max_difference(w.grad(), slice_of(weight.grad(), slice)) < 1e-6);
}

TEST_CASE("grid models match the unsplit model: slices, loss, every gradient", "[grid]") {
  const TensorGridShape shape = world_grid();
  for (const char* arch : {"gpt2", "opt", "llama"}) {
    INFO(arch << " in " << tensor_mode_name(shape.mode));
    const ModelSpec spec = tiny_spec(arch);
    const TensorParallel tp = make_tensor_parallel(g_world, spec, false, nullptr, false, shape);
    auto whole = build_model(spec, /*seed=*/5);
    auto split = build_model(spec, /*seed=*/5, tp);
    auto whole_params = by_name(*whole);
    const auto slices = parameter_slices(*split);
    int64_t local = 0, primary = 0;
    for (const auto& item : split->named_parameters()) {
      const auto& slice = slices.at(item.key());
      INFO(item.key());
      CHECK(!slice.whole());  // every parameter is split or a copy of a hidden column
      CHECK(torch::equal(item.value(), slice_of(whole_params.at(item.key()), slice)));
      local += item.value().numel();
      if (slice.primary) primary += item.value().numel();
    }
    // The primary copies add up to the model exactly once over the grid.
    auto sums = torch::tensor({static_cast<double>(primary)}, torch::kDouble);
    g_world->all_reduce(sums, ReduceOp::Sum);
    CHECK(sums.item<double>() == static_cast<double>(parameter_count(spec)));
    CHECK(local < parameter_count(spec) / 2);

    torch::manual_seed(3);
    const auto tokens = torch::randint(0, spec.vocab_size, {shape.batch_parts(), 16}, torch::kLong);
    const auto targets = torch::randint(0, spec.vocab_size, {shape.batch_parts(), 16}, torch::kLong);
    const auto whole_loss = whole->loss(tokens, targets);
    const auto split_loss = split->loss(tokens, targets);
    CHECK(std::abs(whole_loss.item<double>() - split_loss.item<double>()) < 1e-5);
    whole_loss.backward();
    split_loss.backward();
    for (const auto& item : split->named_parameters()) {
      INFO(item.key());
      const auto expected = slice_of(whole_params.at(item.key()).grad(), slices.at(item.key()));
      CHECK(max_difference(item.value().grad(), expected) < 1e-5);
    }
  }
}

// Micro-batches of one sequence per batch part (accumulated twice per step).
std::string grid_micro_batch() { return "train.micro_batch_size=" + std::to_string(world_grid().batch_parts()); }

// OPT's layers are checked above; over 10 steps its ReLU turns the grid norms' last-bit rounding
// into flipped units (grad norms 1e-4 apart by step 4), so training is compared on GPT-2 and LLaMA.
TEST_CASE("grid training equals the single-process run: GPT-2, LLaMA", "[grid][train]") {
  for (const char* arch : {"gpt2", "llama"}) check_training(arch, world_layout(), {grid_micro_batch()});
}

TEST_CASE("2d under data parallelism with ZeRO-1 and 2.5d under pipeline stages equal the single-process run",
          "[grid][train][composed]") {
  if (g_world->size() != 8) return;
  const std::vector<std::string> micro{"train.micro_batch_size=2"};  // the grids' two batch parts, accumulated
  for (const char* arch : {"gpt2", "llama"}) {
    check_training(arch, {"parallel.tensor.size=4", "parallel.tensor.mode=2d", "parallel.data=2", "zero.stage=1"},
                   micro);
    // The seeds' hybrid: pipeline 2 x 2.5d of q 2, depth 1.
    check_training(arch, {"parallel.tensor.size=4", "parallel.tensor.mode=2.5d", "parallel.pipeline=2"}, micro);
  }
}

TEST_CASE("grid training in bf16 follows the single-process run to 16-bit precision", "[grid][train]") {
  if (g_world->size() != 4) return;
  const auto dir = rank_dir("grid-bf16");
  const std::vector<std::string> common{"precision.dtype=bf16", "train.steps=6", grid_micro_batch()};
  auto layout = common;
  for (const auto& item : world_layout()) layout.push_back(item);
  const auto reference = run_training(tp_config("llama", dir / "single", common), nullptr);
  const auto parallel = run_training(tp_config("llama", dir / "grid", layout), g_world);
  REQUIRE(parallel.losses.size() == reference.losses.size());
  for (size_t i = 0; i < reference.losses.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(std::abs(parallel.losses[i] - reference.losses[i]) < 2e-2);
    CHECK(std::abs(parallel.steps[i].grad_norm - reference.steps[i].grad_norm) < 5e-2 * reference.steps[i].grad_norm);
  }
  fs::remove_all(dir);
}

TEST_CASE("grid checkpoints resume in 1d and in one process", "[grid][checkpoint]") {
  // The grid writes at step 3; 1d over half the ranks (data parallel over two) and one process
  // each continue to step 6, as the uninterrupted single-process run does.
  const auto shared = shared_dir("grid-reshard");
  const auto mine = rank_dir("grid-reshard");
  const std::string checkpoints = "checkpoint.dir=" + (shared / "ckpt").string();
  const std::vector<std::string> micro{grid_micro_batch()};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), micro.begin(), micro.end());
    return extra;
  };
  const auto reference = run_training(tp_config("llama", mine / "single", micro), nullptr);
  auto writer = with({"train.steps=3", "checkpoint.save_final=true", checkpoints});
  for (const auto& item : world_layout()) writer.push_back(item);
  run_training(tp_config("llama", mine / "writer", writer), g_world);
  const auto in_1d = run_training(tp_config("llama", mine / "reader-1d", with({"parallel.tensor=" + std::to_string(g_world->size() / 2), checkpoints})),
                                  g_world);
  CHECK(in_1d.first_step == 3);
  check_losses(in_1d, reference, 3, /*tolerance=*/1e-5);
  const auto alone = run_training(tp_config("llama", mine / "reader-1", with({checkpoints})), nullptr);
  CHECK(alone.first_step == 3);
  check_losses(alone, reference, 3, /*tolerance=*/1e-5);
  g_world->barrier();
  if (g_world->rank() == 0) fs::remove_all(shared);
  fs::remove_all(mine);
}

TEST_CASE("grid layouts that do not fit fail naming the numbers", "[grid]") {
  auto config = [](std::vector<std::string> overrides) {
    return tp_config("gpt2", rank_dir("grid-bad"), std::move(overrides));
  };
  const int n = g_world->size();
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.tensor.size=2", "parallel.tensor.mode=2d"}), n),
                    Catch::Contains("mode 2d needs size = q^2 with q >= 2"));
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.tensor.size=4", "parallel.tensor.mode=2.5d",
                                             "parallel.tensor.depth=3"}), n),
                    Catch::Contains("size 4 is not a multiple of depth 3"));
  CHECK_THROWS_WITH(check_job_layout(config({"parallel.tensor.size=4", "parallel.tensor.depth=2"}), n),
                    Catch::Contains("parallel.tensor.depth 2 applies to mode 2.5d"));
  const std::vector<std::string> two_d{"parallel.tensor.size=4", "parallel.tensor.mode=2d"};
  auto plus = [&](std::string extra) {
    auto out = two_d;
    out.push_back(std::move(extra));
    return out;
  };
  CHECK_THROWS_WITH(check_job_layout(config(plus("train.micro_batch_size=1")), 4),
                    Catch::Contains("train.micro_batch_size 1 does not split over the 2 batch parts"));
  CHECK_THROWS_WITH(check_job_layout(config(plus("model.d_ff=130")), 4),
                    Catch::Contains("d_ff 130 into 2 x 2 strips"));
  CHECK_THROWS_WITH(check_job_layout(config(plus("parallel.sequence.mode=split_gather")), 4),
                    Catch::Contains("sequence parallelism (parallel.sequence) combines with mode 1d only"));
}

}  // namespace

int main(int argc, char** argv) { return cr::test::run_mpi_session(argc, argv, cr::test::g_world); }
