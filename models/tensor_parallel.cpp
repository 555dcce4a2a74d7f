#include "models/tensor_parallel.h"

#include <algorithm>
#include <limits>

#include <fmt/ranges.h>

#include "core/base/error.h"
#include "models/conjugate_pair.h"
#include "models/flop_counter.h"
#include "models/linear.h"
#include "models/lm_loss.h"
#include "models/mixed_precision.h"
#include "models/ring_attention.h"
#include "parallel/communicator.h"
#include "parallel/process_mesh.h"

namespace cr {
namespace {

using detail::all_reduced;
using detail::ConjugatePair;
using detail::handle;
using detail::identity;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// (B, T / n, ...) on each rank <-> (B, T, ...): the collectives are flat, so the sequence is
// moved outermost for them.
torch::Tensor gather_along_sequence(const torch::Tensor& x, Communicator* group) {
  auto local = x.transpose(0, 1).contiguous();
  auto sizes = local.sizes().vec();
  sizes[0] *= group->size();
  auto full = torch::empty(sizes, local.options());
  group->all_gather(local, full);
  return full.transpose(0, 1);
}

torch::Tensor reduce_scatter_along_sequence(const torch::Tensor& x, Communicator* group) {
  auto full = x.transpose(0, 1).contiguous();
  auto sizes = full.sizes().vec();
  CR_CHECK(sizes[0] % group->size() == 0, "sequence length {} does not split over {} ranks", sizes[0], group->size());
  sizes[0] /= group->size();
  auto local = torch::empty(sizes, full.options());
  group->reduce_scatter(full, local, ReduceOp::Sum);
  return local.transpose(0, 1);
}

// (B, T / P, H, D) -> (B, T, H / P, D): part q of the heads goes to rank q, which receives every
// rank's tokens in sequence order.
torch::Tensor exchange_to_heads(const torch::Tensor& x, Communicator* group) {
  const int64_t P = group->size(), B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  auto send = x.reshape({B, T, P, H / P, D}).permute({2, 0, 1, 3, 4}).contiguous();
  auto received = torch::empty_like(send);
  group->all_to_all(send, received);  // (P sources, B, T / P, H / P, D)
  return received.permute({1, 0, 2, 3, 4}).reshape({B, P * T, H / P, D});
}

// (B, T, H / P, D) -> (B, T / P, H, D): the inverse.
torch::Tensor exchange_to_sequence(const torch::Tensor& x, Communicator* group) {
  const int64_t P = group->size(), B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  auto send = x.reshape({B, P, T / P, H, D}).permute({1, 0, 2, 3, 4}).contiguous();
  auto received = torch::empty_like(send);
  group->all_to_all(send, received);  // (P sources, B, T / P, H / P, D)
  return received.permute({1, 2, 0, 3, 4}).reshape({B, T / P, P * H, D});
}

using SequenceToHeads = ConjugatePair<exchange_to_heads, exchange_to_sequence>;
using HeadsToSequence = ConjugatePair<exchange_to_sequence, exchange_to_heads>;
using SumGradient = ConjugatePair<identity, all_reduced>;
using SumForward = ConjugatePair<all_reduced, identity>;
using GatherSequence = ConjugatePair<gather_along_sequence, reduce_scatter_along_sequence>;
using ReduceScatterSequence = ConjugatePair<reduce_scatter_along_sequence, gather_along_sequence>;

// Per chunk of rows: the local logits' max, then the sum of exponentials and the target's logit
// are all-reduced; the gradient softmax - onehot is formed in the same pass (as lm_loss.cpp does
// unsplit), so a chunk's logits are the only (rows x vocab / size) buffer.
class VocabParallelCrossEntropy : public torch::autograd::Function<VocabParallelCrossEntropy> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t first_row, int64_t vocab, int64_t group_handle) {
    auto* group = detail::communicator(group_handle);
    const int64_t rows = hidden.size(0), local_rows = weight.size(0);
    FusedLossGradients gradients(hidden, weight);
    auto loss_sum = torch::zeros({}, hidden.options().dtype(torch::kFloat));
    // Every rank must run the same chunks (each one communicates): chunked by the whole vocabulary.
    const int64_t step = std::max<int64_t>(1, loss_chunk_rows(rows, vocab, hidden.is_cuda()));
    for (int64_t begin = 0; begin < rows; begin += step) {
      const int64_t end = std::min(rows, begin + step);
      auto h = hidden.slice(0, begin, end);
      MatmulCounter::count(end - begin, weight.size(1), local_rows);
      auto logits = torch::mm(h, weight.t()).to(torch::kFloat);
      auto max = std::get<0>(logits.max(1, /*keepdim=*/true));
      group->all_reduce(max, ReduceOp::Max);
      logits.sub_(max);
      // Targets outside this rank's rows count zero here; their owner adds them.
      auto t = targets.slice(0, begin, end) - first_row;
      auto mine = (t >= 0).logical_and(t < local_rows);
      auto index = torch::where(mine, t, torch::zeros_like(t)).unsqueeze(1);
      auto my_target_logit = logits.gather(1, index).squeeze(1) * mine.to(torch::kFloat);
      auto exp = logits.exp_();  // one chunk-sized buffer, as the unsplit loss keeps
      auto sums = torch::stack({exp.sum(1), my_target_logit}, 1);
      group->all_reduce(sums, ReduceOp::Sum);
      auto sum_exp = sums.select(1, 0), target_logit = sums.select(1, 1);
      loss_sum += (sum_exp.log() - target_logit).sum();
      if (!gradients.needed()) continue;
      auto grad_logits = exp.div_(sum_exp.unsqueeze(1));
      grad_logits.scatter_add_(1, index, -mine.to(torch::kFloat).unsqueeze(1));
      gradients.add_chunk(grad_logits, h, begin, weight);
    }
    gradients.save(ctx, weight);
    return loss_sum * (1.0 / static_cast<double>(rows));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    return FusedLossGradients::backward(ctx, grad_outputs, 4);
  }
};

// Rows [begin, begin + length) of dimension 0 of `shape` (of each of `parts` parts) for this rank.
ParameterSlice row_slice(std::vector<int64_t> shape, const TensorParallel& tp, int64_t parts = 1) {
  const int64_t per_part = shape[0] / parts;
  return split_parameter(std::move(shape), 0, per_part / tp.size * tp.rank, per_part / tp.size, parts);
}

}  // namespace

void check_tensor_split(const ModelSpec& spec, int size) {
  MeshShape shape;
  shape.tensor = size;
  check_mesh_fits_model(shape, spec.n_layer, spec.n_head, spec.d_model);  // whole heads, even width
  std::vector<std::string> problems;
  if (spec.n_kv_head % size != 0 && size % spec.n_kv_head != 0) {
    problems.push_back(fmt::format("n_kv_head {} and tensor {}: one must divide the other (key/value heads are split, "
                                   "or copied to the ranks whose query heads read them)",
                                   spec.n_kv_head, size));
  }
  if (spec.vocab_size < size) {
    problems.push_back(fmt::format("vocab_size {} is less than tensor {}: each tensor rank holds vocabulary rows",
                                   spec.vocab_size, size));
  }
  if (spec.d_ff % size != 0) {
    problems.push_back(fmt::format("d_ff {} is not divisible by tensor {}: the MLP splits its hidden units evenly",
                                   spec.d_ff, size));
  }
  if (!problems.empty()) fail("the tensor-parallel layout does not fit the model: {}", fmt::join(problems, "; "));
}

void check_sequence_heads(const ModelSpec& spec, int tensor_size, int sequence_size) {
  const int64_t heads = spec.n_head / tensor_size;
  const int64_t kv_heads = std::max<int64_t>(1, spec.n_kv_head / tensor_size);
  if (heads % sequence_size != 0 || kv_heads % sequence_size != 0) {
    fail("parallel.sequence.size {}: all_to_all gives each sequence rank whole attention heads, but each of the "
         "{} tensor rank(s) holds {} query and {} key/value heads (n_head {}, n_kv_head {})",
         sequence_size, tensor_size, heads, kv_heads, spec.n_head, spec.n_kv_head);
  }
}

TensorParallel tensor_parallel_layout(int rank, int size, const ModelSpec& spec, bool sequence_parallel,
                                      int sequence_size, bool ring, const TensorGridShape& grid) {
  TensorParallel tp;
  if (grid.grid()) {
    CR_CHECK(grid.size() == size, "a {} grid of {} ranks over {} tensor ranks", tensor_mode_name(grid.mode),
             grid.size(), size);
    if (sequence_parallel || sequence_size > 1) {
      fail("parallel.tensor mode {} splits activations by batch and hidden units over its grid; sequence "
           "parallelism (parallel.sequence) combines with mode 1d only", tensor_mode_name(grid.mode));
    }
    check_grid_split(spec, grid);
    tp.grid = tensor_grid_layout(grid, rank);
  } else {
    check_tensor_split(spec, size);
    if (sequence_size > 1 && !ring) check_sequence_heads(spec, size, sequence_size);
  }
  tp.rank = rank;
  tp.size = size;
  tp.sequence_parallel = sequence_parallel && size > 1;
  tp.sequence_size = sequence_size;
  tp.ring = ring;
  return tp;
}

TensorParallel make_tensor_parallel(Communicator* group, const ModelSpec& spec, bool sequence_parallel,
                                    Communicator* sequence, bool ring, const TensorGridShape& grid) {
  TensorParallel tp = tensor_parallel_layout(group ? group->rank() : 0, group ? group->size() : 1, spec,
                                             sequence_parallel, sequence ? sequence->size() : 1, ring, grid);
  tp.group = group;
  if (tp.grid) tp.grid = make_tensor_grid(group, grid);
  if (sequence) {
    tp.sequence_group = sequence;
    tp.sequence_rank = sequence->rank();
  }
  if (group && !tp.grid && spec.n_kv_head < tp.size) {
    const int sharing = tp.size / static_cast<int>(spec.n_kv_head);
    tp.kv_group = group->split(tp.rank / sharing, tp.rank % sharing, group->name() + ".kv");
  }
  return tp;
}

std::pair<int64_t, int64_t> tensor_rows(int64_t total, const TensorParallel& tp) {
  return shard_range(total, tp.rank, tp.size);
}

void sum_gradient_over(torch::Tensor& param, std::shared_ptr<Communicator> group) {
  if (!group || group->size() == 1) return;
  param.register_hook([group](const torch::Tensor& grad) { return all_reduced(grad, group.get()); });
}

void sum_partial_gradient(torch::Tensor& param, const TensorParallel& tp) {
  // The tensor group outlives the model (the ParallelContext owns it): a non-owning handle.
  if (tp.sequence_parallel) sum_gradient_over(param, std::shared_ptr<Communicator>(tp.group, [](Communicator*) {}));
}

torch::Tensor enter_tensor_region(const torch::Tensor& x, const TensorParallel& tp) {
  if (tp.grid) return grid_enter(x, LinearRole::Opening, *tp.grid);
  if (!tp.split()) return x;
  if (tp.sequence_parallel) return GatherSequence::apply(x, handle(tp.group));
  return SumGradient::apply(x, handle(tp.group));
}

torch::Tensor leave_tensor_region(const torch::Tensor& x, const TensorParallel& tp) {
  if (!tp.split() || tp.grid) return x;
  if (tp.sequence_parallel) return ReduceScatterSequence::apply(x, handle(tp.group));
  return SumForward::apply(x, handle(tp.group));
}

torch::Tensor local_sequence(const torch::Tensor& x, const TensorParallel& tp, int64_t dim) {
  if (tp.ring_attention()) {
    return x.index_select(dim, zigzag_positions(x.size(dim), tp.sequence_rank, tp.sequence_size).to(x.device()));
  }
  if (!tp.sequence_parallel && !tp.ulysses()) return x;
  const int64_t parts = tp.sequence_parallel ? tp.size : tp.sequence_size;
  const int64_t part = tp.sequence_parallel ? tp.rank : tp.sequence_rank;
  const int64_t length = x.size(dim);
  CR_CHECK(length % parts == 0, "sequence length {} does not split over {} ranks", length, parts);
  return x.narrow(dim, length / parts * part, length / parts);
}

torch::Tensor sequence_to_heads(const torch::Tensor& x, const TensorParallel& tp) {
  return tp.ulysses() ? SequenceToHeads::apply(x, handle(tp.sequence_group)) : x;
}

torch::Tensor heads_to_sequence(const torch::Tensor& x, const TensorParallel& tp) {
  return tp.ulysses() ? HeadsToSequence::apply(x, handle(tp.sequence_group)) : x;
}

void TensorParallelLinear::declare_grid(int64_t in, int64_t out, bool with_bias, int64_t parts, LinearRole role,
                                       const TensorGrid& grid) {
  weight = declare_parameter("weight", grid_weight_slice(out, in, parts, role, grid), normal_init(kInitStd));
  sum_over_layers(weight, grid);
  if (!with_bias) return;
  bias = declare_parameter("bias", grid_hidden_slice({parts * out}, 0, parts, grid, role), constant_init(0.0));
  sum_over_copies(bias, grid, role);
}

ColumnParallelLinearImpl::ColumnParallelLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                                   const TensorParallel& tp, int64_t fused_parts)
    : tp_(tp), parts_(fused_parts) {
  if (tp.grid) {
    declare_grid(in_features, out_features, with_bias, fused_parts, LinearRole::Opening, *tp.grid);
    return;
  }
  weight = declare_parameter("weight", row_slice({fused_parts * out_features, in_features}, tp, fused_parts),
                             normal_init(kInitStd));
  if (with_bias) {
    bias = declare_parameter("bias", row_slice({fused_parts * out_features}, tp, fused_parts), constant_init(0.0));
  }
}

torch::Tensor ColumnParallelLinearImpl::project(const torch::Tensor& x) {
  if (tp_.grid) return grid_linear(x, cast_to_activation(weight, x), bias, parts_, LinearRole::Opening, *tp_.grid);
  return cr::linear(x, weight, bias);
}

RowParallelLinearImpl::RowParallelLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                             const TensorParallel& tp)
    : tp_(tp) {
  if (tp.grid) {
    declare_grid(in_features, out_features, with_bias, 1, LinearRole::Closing, *tp.grid);
    return;
  }
  weight = declare_parameter(
      "weight", split_parameter({out_features, in_features}, 1, in_features / tp.size * tp.rank, in_features / tp.size),
      normal_init(kInitStd));
  if (with_bias) {
    bias = declare_parameter("bias", whole_parameter({out_features}, tp.rank == 0), constant_init(0.0));
    sum_partial_gradient(bias, tp);
  }
}

torch::Tensor RowParallelLinearImpl::forward(const torch::Tensor& x) {
  if (tp_.grid) {
    const auto input = grid_enter(x, LinearRole::Closing, *tp_.grid);
    return grid_linear(input, cast_to_activation(weight, x), bias, 1, LinearRole::Closing, *tp_.grid);
  }
  if (!tp_.split()) return cr::linear(x, weight, bias);
  auto y = leave_tensor_region(cr::linear(x, weight), tp_);
  return bias.defined() ? y + bias.to(y.scalar_type()) : y;
}

KeyValueLinearImpl::KeyValueLinearImpl(const ModelSpec& spec, const TensorParallel& tp) : tp_(tp) {
  const int64_t head_dim = spec.d_model / spec.n_head, kv_heads = spec.n_kv_head;
  const std::vector<int64_t> shape{kv_heads * head_dim, spec.d_model};
  if (tp.grid) {
    local_heads_ = kv_heads / tp.grid->q();
    declare_grid(spec.d_model, shape[0], spec.bias, 1, LinearRole::Opening, *tp.grid);
    return;
  }
  ParameterSlice w, b;
  if (kv_heads >= tp.size) {
    local_heads_ = kv_heads / tp.size;
    w = row_slice(shape, tp);
    b = row_slice({shape[0]}, tp);
  } else {
    // Ranks sharing a head hold copies; the first of them is primary.
    const int64_t sharing = tp.size / kv_heads, head = tp.rank / sharing;
    local_heads_ = 1;
    w = split_parameter(shape, 0, head * head_dim, head_dim);
    b = split_parameter({shape[0]}, 0, head * head_dim, head_dim);
    w.primary = b.primary = tp.rank % sharing == 0;
  }
  // Ranks holding copies of a head each compute part of its gradient.
  weight = declare_parameter("weight", w, normal_init(kInitStd));
  sum_gradient_over(weight, tp.kv_group);
  if (spec.bias) {
    bias = declare_parameter("bias", b, constant_init(0.0));
    sum_gradient_over(bias, tp.kv_group);
  }
}

torch::Tensor KeyValueLinearImpl::project(const torch::Tensor& x) {
  if (tp_.grid) return grid_linear(x, cast_to_activation(weight, x), bias, 1, LinearRole::Opening, *tp_.grid);
  return cr::linear(x, weight, bias);
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(int64_t rows, int64_t dim, const TensorParallel& tp) : tp_(tp) {
  if (tp.grid) {
    first_row_ = grid_vocabulary_rows(rows, *tp.grid).first;
    weight = declare_parameter("weight", grid_vocabulary_slice(rows, dim, *tp.grid), normal_init(kInitStd));
    return;
  }
  const auto [begin, end] = tensor_rows(rows, tp);
  first_row_ = begin;
  weight = declare_parameter("weight", split_parameter({rows, dim}, 0, begin, end - begin), normal_init(kInitStd));
}

torch::Tensor VocabParallelEmbeddingImpl::forward(const torch::Tensor& all_tokens) {
  // all_to_all and ring_attn: this rank embeds its part of the sequence only.
  const auto tokens = tp_.sequence_size > 1 ? local_sequence(all_tokens, tp_) : all_tokens;
  if (tp_.grid) return grid_embedding(tokens, weight, first_row_, *tp_.grid);
  if (!tp_.split()) return torch::embedding(weight, tokens);
  auto local = tokens - first_row_;
  auto mine = (local >= 0).logical_and(local < weight.size(0));
  // Rows outside this rank's part look up row 0 and are zeroed, so their gradient is zero too.
  auto y = torch::embedding(weight, torch::where(mine, local, torch::zeros_like(local)));
  return leave_tensor_region(y * mine.unsqueeze(-1).to(y.scalar_type()), tp_);
}

torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight, int64_t first_row,
                                           int64_t vocab, const torch::Tensor& targets, const TensorParallel& tp) {
  if (tp.grid) return grid_whole_loss(grid_cross_entropy(hidden, weight, first_row, targets, *tp.grid), *tp.grid);
  if (!tp.split()) return linear_cross_entropy(hidden, weight, targets);
  return VocabParallelCrossEntropy::apply(hidden, weight, targets, first_row, vocab, handle(tp.group));
}

torch::Tensor vocab_parallel_logits(const torch::Tensor& hidden, const torch::Tensor& weight, int64_t first_row,
                                    int64_t vocab, const TensorParallel& tp) {
  if (tp.grid) {
    fail("full logits (eval of logits, generate, serve) run in parallel.tensor mode 1d; a {} checkpoint loads "
         "in 1d or in one process", tensor_mode_name(tp.grid->shape.mode));
  }
  MatmulCounter::count(hidden.numel() / hidden.size(-1), weight.size(1), weight.size(0));
  auto local = torch::matmul(hidden, weight.t());
  if (!tp.split()) return local;
  // Vocabulary parts may differ in size, so the parts meet in a sum rather than a flat all-gather.
  auto sizes = local.sizes().vec();
  sizes.back() = vocab;
  auto full = torch::zeros(sizes, local.options());
  full.narrow(-1, first_row, weight.size(0)).copy_(local);
  tp.group->all_reduce(full, ReduceOp::Sum);
  return full;
}

}  // namespace cr
