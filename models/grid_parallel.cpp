#include "models/grid_parallel.h"

#include <algorithm>

#include <fmt/ranges.h>

#include "core/base/error.h"
#include "models/conjugate_pair.h"
#include "models/flop_counter.h"
#include "models/lm_loss.h"
#include "models/tensor_parallel.h"
#include "parallel/communicator.h"

namespace cr {
namespace {

using detail::all_reduced;
using detail::ConjugatePair;
using detail::handle;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd functions carry the grid as an integer, as they carry groups (conjugate_pair.h).
int64_t grid_handle(const TensorGrid& grid) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(&grid)); }
const TensorGrid& grid_of(int64_t value) { return *reinterpret_cast<const TensorGrid*>(static_cast<intptr_t>(value)); }

// (..., C / n) on each rank of `group` -> (..., C), the parts in rank order.
torch::Tensor gather_last_dim(const torch::Tensor& x, Communicator* group) {
  const int n = group->size();
  auto local = x.contiguous();
  const int64_t width = local.size(-1), rows = local.numel() / width;
  auto full = torch::empty({n, rows, width}, local.options());
  group->all_gather(local, full);
  auto sizes = local.sizes().vec();
  sizes.back() = width * n;
  return full.permute({1, 0, 2}).reshape(sizes);
}

// (..., C) partial sums -> this rank's (..., C / n) part of their sum over `group`.
torch::Tensor reduce_scatter_last_dim(const torch::Tensor& x, Communicator* group) {
  const int n = group->size();
  const int64_t width = x.size(-1) / n, rows = x.numel() / x.size(-1);
  auto full = x.reshape({rows, n, width}).permute({1, 0, 2}).contiguous();
  auto local = torch::empty({rows, width}, x.options());
  group->reduce_scatter(full, local, ReduceOp::Sum);
  auto sizes = x.sizes().vec();
  sizes.back() = width;
  return local.view(sizes);
}

// (B, ...) on each rank -> (n B, ...), the batch parts in rank order, and back as partial sums.
torch::Tensor gather_first_dim(const torch::Tensor& x, Communicator* group) {
  auto local = x.contiguous();
  auto sizes = local.sizes().vec();
  sizes[0] *= group->size();
  auto full = torch::empty(sizes, local.options());
  group->all_gather(local, full);
  return full;
}

torch::Tensor reduce_scatter_first_dim(const torch::Tensor& x, Communicator* group) {
  auto full = x.contiguous();
  auto sizes = full.sizes().vec();
  CR_CHECK(sizes[0] % group->size() == 0, "{} sequences do not split over {} ranks", sizes[0], group->size());
  sizes[0] /= group->size();
  auto local = torch::empty(sizes, full.options());
  group->reduce_scatter(full, local, ReduceOp::Sum);
  return local;
}

using GatherHidden = ConjugatePair<gather_last_dim, reduce_scatter_last_dim>;
using GatherBatch = ConjugatePair<gather_first_dim, reduce_scatter_first_dim>;
using ScatterBatch = ConjugatePair<reduce_scatter_first_dim, gather_first_dim>;
// Every hidden part uses the total: the gradient is all-reduced too.
using SumHidden = ConjugatePair<all_reduced, all_reduced>;

// Strips (parts * rows, in) of `group`'s ranks -> their block (parts * n * rows, in): each
// part's strips in rank order. Null group: the strip is the block.
torch::Tensor gather_strips(const torch::Tensor& strip, int64_t parts, Communicator* group) {
  if (!group) return strip;
  const int n = group->size();
  auto local = strip.contiguous();
  const int64_t rows = local.size(0) / parts, in = local.size(1);
  auto full = torch::empty({n, parts, rows, in}, local.options());
  group->all_gather(local, full);
  return full.transpose(0, 1).reshape({parts * n * rows, in});
}

// A block's partial gradient -> this rank's strip of its sum over `group`.
torch::Tensor reduce_scatter_strips(const torch::Tensor& block, int64_t parts, Communicator* group) {
  if (!group) return block;
  const int n = group->size();
  const int64_t in = block.size(1), rows = block.size(0) / parts / n;
  auto full = block.reshape({parts, n, rows, in}).transpose(0, 1).contiguous();
  auto local = torch::empty({parts * rows, in}, block.options());
  group->reduce_scatter(full, local, ReduceOp::Sum);
  return local;
}

// x (..., in) times the weight block gathered from the strips (or pieces) of `strips`' ranks.
class GridLinear : public torch::autograd::Function<GridLinear> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight, int64_t parts,
                               int64_t strips) {
    // The weight is saved by reference (ZeRO-3 gives it new storage for backward) and its
    // strips are gathered again there, as SUMMA broadcasts B again for its ABT.
    ctx->save_for_backward({x, weight});
    ctx->saved_data["strips"] = strips;
    ctx->saved_data["parts"] = parts;
    const auto block = gather_strips(weight, parts, detail::communicator(strips));
    MatmulCounter::count(x.numel() / x.size(-1), x.size(-1), block.size(0));
    return torch::matmul(x, block.t());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* strips = detail::communicator(ctx->saved_data["strips"].toInt());
    const int64_t parts = ctx->saved_data["parts"].toInt();
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto block = gather_strips(weight, parts, strips);
    const auto grad = grads[0].reshape({-1, block.size(0)});
    variable_list out(4);
    if (ctx->needs_input_grad(0)) out[0] = grad.mm(block).view(x.sizes());
    if (ctx->needs_input_grad(1)) {
      out[1] = reduce_scatter_strips(grad.t().mm(x.reshape({-1, x.size(-1)})), parts, strips);
    }
    return out;
  }
};

// The LM loss with the output embedding's rows split over the batch group and its columns over
// the row: every token's hidden column is gathered over the batch group, each rank forms the
// partial logits of all of them against its vocabulary rows, and a reduce-scatter along the row
// sums the hidden parts and leaves each rank 1/q of the tokens. The softmax max and sums are
// all-reduced over the batch group (the vocabulary parts); the gradient of each part's logits
// is gathered back along the row to form the table's gradient and the hidden columns', which a
// reduce-scatter over the batch group returns to their batch parts. Per chunk of tokens, so a
// (tokens x vocab / batch_parts) chunk is the largest buffer.
class GridCrossEntropy : public torch::autograd::Function<GridCrossEntropy> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t first_row, int64_t grid_value) {
    const TensorGrid& grid = grid_of(grid_value);
    CR_CHECK(grid.row && grid.batch, "the grid LM loss runs over the grid's communicators");
    const int64_t q = grid.q(), local_vocab = weight.size(0);
    const auto all = gather_first_dim(hidden, grid.batch.get()).to(torch::kFloat);  // every token, batch parts in order
    const int64_t rows = all.size(0);
    CR_CHECK(rows % q == 0 && targets.numel() == rows, "{} tokens and {} targets over {} grid columns", rows,
             targets.numel(), q);
    const double scale = 1.0 / static_cast<double>(rows);
    const bool needed = hidden.requires_grad() || weight.requires_grad();
    const auto weight_f = weight.to(torch::kFloat);
    torch::Tensor grad_all, grad_weight;
    if (needed) {
      grad_all = torch::zeros_like(all);
      grad_weight = torch::zeros_like(weight_f);
    }
    auto loss_sum = torch::zeros({}, all.options());
    // Chunks of whole multiples of q tokens, the same on every rank (each one communicates).
    const int64_t step = std::max<int64_t>(q, loss_chunk_rows(rows, local_vocab, hidden.is_cuda()) / q * q);
    for (int64_t begin = 0; begin < rows; begin += step) {
      const int64_t end = std::min(rows, begin + step), n = end - begin, mine_rows = n / q;
      const auto h = all.slice(0, begin, end);
      MatmulCounter::count(n, weight.size(1), local_vocab);
      auto logits = torch::empty({mine_rows, local_vocab}, all.options());
      grid.row->reduce_scatter(torch::mm(h, weight_f.t()).contiguous(), logits, ReduceOp::Sum);
      auto max = std::get<0>(logits.max(1, /*keepdim=*/true));
      grid.batch->all_reduce(max, ReduceOp::Max);
      logits.sub_(max);
      const int64_t first_token = begin + mine_rows * grid.at.column;
      auto t = targets.slice(0, first_token, first_token + mine_rows) - first_row;
      auto mine = (t >= 0).logical_and(t < local_vocab);
      auto index = torch::where(mine, t, torch::zeros_like(t)).unsqueeze(1);
      auto target_logit = logits.gather(1, index).squeeze(1) * mine.to(torch::kFloat);
      auto exp = logits.exp_();
      auto sums = torch::stack({exp.sum(1), target_logit}, 1);
      grid.batch->all_reduce(sums, ReduceOp::Sum);
      loss_sum += (sums.select(1, 0).log() - sums.select(1, 1)).sum();
      if (!needed) continue;
      auto grad_logits = exp.div_(sums.select(1, 0).unsqueeze(1));
      grad_logits.scatter_add_(1, index, -mine.to(torch::kFloat).unsqueeze(1));
      auto g = torch::empty({n, local_vocab}, grad_logits.options());
      grid.row->all_gather(grad_logits, g);
      grad_all.slice(0, begin, end).copy_(g.mm(weight_f));
      grad_weight.add_(g.t().mm(h));
    }
    if (needed) {
      const auto grad_hidden = reduce_scatter_first_dim(grad_all.mul_(scale), grid.batch.get());
      ctx->save_for_backward({grad_hidden.to(hidden.scalar_type()), grad_weight.mul_(scale).to(weight.scalar_type())});
    }
    return loss_sum * scale;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto g = grads[0];
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

std::shared_ptr<TensorGrid> grid_at(const TensorGridShape& shape, int tensor_rank) {
  auto grid = std::make_shared<TensorGrid>();
  grid->shape = shape;
  grid->at = grid_position(shape, tensor_rank);
  return grid;
}

// 3d's opening layers write activations whose hidden part is the rank's row.
bool transposed(LinearRole role, const TensorGrid& grid) { return grid.cube() && role == LinearRole::Opening; }

}  // namespace

std::shared_ptr<const TensorGrid> tensor_grid_layout(const TensorGridShape& shape, int tensor_rank) {
  return grid_at(shape, tensor_rank);
}

std::shared_ptr<const TensorGrid> make_tensor_grid(Communicator* tensor_group, const TensorGridShape& shape) {
  const int rank = tensor_group ? tensor_group->rank() : 0;
  CR_CHECK((tensor_group ? tensor_group->size() : 1) == shape.size(), "a {} grid of {} ranks over a tensor group of {}",
           tensor_mode_name(shape.mode), shape.size(), tensor_group ? tensor_group->size() : 1);
  auto grid = grid_at(shape, rank);
  if (!tensor_group) return grid;
  auto split = [&](GridGroup group, const char* name) -> std::shared_ptr<Communicator> {
    const std::string full_name = tensor_group->name() + "." + name;
    std::shared_ptr<Communicator> out =
        tensor_group->split(grid_color(shape, rank, group), grid_key(shape, rank, group), full_name);
    return out->size() > 1 ? out : nullptr;
  };
  grid->row = split(GridGroup::Row, "row");
  grid->column = split(GridGroup::Column, "column");
  grid->depth = split(GridGroup::Depth, "depth");
  // One grid (2d): the batch parts are the column's.
  grid->batch = shape.depth == 1 ? grid->column : split(GridGroup::Batch, "batch");
  if (grid->cube()) grid->transposed_batch = split(GridGroup::TransposedBatch, "transposed_batch");
  return grid;
}

void check_grid_split(const ModelSpec& spec, const TensorGridShape& shape) {
  const int64_t q = shape.q;
  std::vector<std::string> problems;
  auto need = [&](bool ok, std::string what) {
    if (!ok) problems.push_back(std::move(what));
  };
  need(spec.n_head % q == 0, fmt::format("n_head {} does not split over {} parts", spec.n_head, q));
  need(spec.n_kv_head % q == 0, fmt::format("n_kv_head {} does not split over {} parts", spec.n_kv_head, q));
  need(spec.d_model % (q * q) == 0, fmt::format("d_model {} does not split into {} x {} strips", spec.d_model, q, q));
  need(spec.d_ff % (q * q) == 0, fmt::format("d_ff {} does not split into {} x {} strips", spec.d_ff, q, q));
  need(spec.vocab_size >= shape.batch_parts(),
       fmt::format("vocab_size {} is less than the {} batch parts holding its rows", spec.vocab_size,
                   shape.batch_parts()));
  need(embedding_dim(spec) == spec.d_model,
       fmt::format("OPT's project_in / project_out (word_embed_proj_dim {} != d_model {}) run in mode 1d only",
                   embedding_dim(spec), spec.d_model));
  if (!problems.empty()) {
    fail("parallel.tensor mode {} (q {}) does not fit the model: {}", tensor_mode_name(shape.mode), q,
         fmt::join(problems, "; "));
  }
}

ParameterSlice grid_weight_slice(int64_t out, int64_t in, int64_t parts, LinearRole role, const TensorGrid& grid) {
  const int64_t q = grid.q(), strip = out / (q * q);
  const GridPosition& at = grid.at;
  if (!grid.cube()) {
    auto slice = split_parameter({parts * out, in}, 0, (at.column * q + at.row) * strip, strip, parts);
    slice.primary = at.layer == 0;
    return slice;
  }
  // Output block row (opening) or column (closing), input block the other; piece `layer` of the block's rows.
  const int64_t out_block = role == LinearRole::Opening ? at.row : at.column;
  const int64_t in_block = role == LinearRole::Opening ? at.column : at.row;
  return split_again(split_parameter({parts * out, in}, 0, (out_block * q + at.layer) * strip, strip, parts), 1,
                     in_block * (in / q), in / q);
}

ParameterSlice grid_hidden_slice(std::vector<int64_t> shape, int dim, int64_t parts, const TensorGrid& grid,
                                 LinearRole role) {
  const bool swap = transposed(role, grid);
  const int64_t width = shape[static_cast<size_t>(dim)] / parts / grid.q();
  auto slice = split_parameter(std::move(shape), dim, (swap ? grid.at.row : grid.at.column) * width, width, parts);
  slice.primary = grid.at.layer == 0 && (swap ? grid.at.column : grid.at.row) == 0;
  return slice;
}

void sum_over_copies(torch::Tensor& param, const TensorGrid& grid, LinearRole role) {
  sum_gradient_over(param, transposed(role, grid) ? grid.transposed_batch : grid.batch);
}

void sum_over_layers(torch::Tensor& param, const TensorGrid& grid) {
  if (grid.shape.mode == TensorMode::TwoAndHalfD) sum_gradient_over(param, grid.depth);
}

torch::Tensor grid_enter(const torch::Tensor& x, LinearRole role, const TensorGrid& grid) {
  if (!grid.cube()) return grid.row ? GatherHidden::apply(x, handle(grid.row.get())) : x;
  Communicator* group = role == LinearRole::Opening ? grid.column.get() : grid.row.get();
  return group ? GatherBatch::apply(x, handle(group)) : x;
}

torch::Tensor grid_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                          int64_t parts, LinearRole role, const TensorGrid& grid) {
  auto y = GridLinear::apply(x, weight, parts, handle(grid.cube() ? grid.depth.get() : grid.column.get()));
  if (grid.cube()) {
    Communicator* group = role == LinearRole::Opening ? grid.row.get() : grid.column.get();
    if (group) y = ScatterBatch::apply(y, handle(group));
  }
  return bias.defined() ? y + bias.to(y.scalar_type()) : y;
}

torch::Tensor grid_sum_hidden(const torch::Tensor& partial, const TensorGrid& grid) {
  return grid.row ? SumHidden::apply(partial, handle(grid.row.get())) : partial;
}

ParameterSlice grid_vocabulary_slice(int64_t vocab, int64_t dim, const TensorGrid& grid) {
  const auto [begin, end] = grid_vocabulary_rows(vocab, grid);
  const int64_t width = dim / grid.q();
  return split_again(split_parameter({vocab, dim}, 0, begin, end - begin), 1, grid.at.column * width, width);
}

std::pair<int64_t, int64_t> grid_vocabulary_rows(int64_t vocab, const TensorGrid& grid) {
  return shard_range(vocab, grid.batch_part(), grid.batch_parts());
}

torch::Tensor grid_embedding(const torch::Tensor& tokens, const torch::Tensor& weight, int64_t first_row,
                             const TensorGrid& grid) {
  auto local = tokens - first_row;
  auto mine = (local >= 0).logical_and(local < weight.size(0));
  // Rows outside this rank's part look up row 0 and are zeroed, so their gradient is zero too.
  auto y = torch::embedding(weight, torch::where(mine, local, torch::zeros_like(local)));
  y = y * mine.unsqueeze(-1).to(y.scalar_type());
  return grid.batch ? ScatterBatch::apply(y, handle(grid.batch.get())) : y;
}

torch::Tensor grid_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight, int64_t first_row,
                                 const torch::Tensor& targets, const TensorGrid& grid) {
  return GridCrossEntropy::apply(hidden, weight, targets, first_row, grid_handle(grid));
}

torch::Tensor grid_whole_loss(const torch::Tensor& share, const TensorGrid& grid) {
  if (!grid.row) return share;
  auto whole = share.detach().clone();
  grid.row->all_reduce(whole, ReduceOp::Sum);
  return share + (whole - share.detach());
}

}  // namespace cr
