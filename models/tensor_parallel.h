// Tensor parallelism (Megatron-style 1D) and its sequence-parallel variant (split_gather): the
// layers that split a transformer over a tensor group and, in this one file, the communication
// each needs in forward and its conjugate in backward.
//
//   ColumnParallelLinear    weight split by output rows; input enters the tensor region
//                           (identity / all-reduce of its gradient, or all-gather along the
//                           sequence / reduce-scatter of its gradient under sequence parallelism)
//   RowParallelLinear       weight split by input columns; partial outputs all-reduced (or
//                           reduce-scattered along the sequence), then the bias added
//   VocabParallelEmbedding  rows split over the vocabulary, lookups outside a rank's rows are zero,
//                           partial outputs all-reduced (or reduce-scattered along the sequence)
//   vocab_parallel_cross_entropy  the fused LM loss with the output embedding's rows split: the
//                           softmax max and sum are all-reduced, full logits never exist
//
// Sequence parallelism on its own axis (all_to_all, DeepSpeed Ulysses) lives here too: outside
// attention each rank of the sequence group holds 1/size of every sequence; attention trades
// the sequence parts for head parts (all-to-all) and back.
//
// 2d, 2.5d and 3d grids (parallel.tensor.mode) run the same layers through grid_parallel.h.
//
// At tensor size 1 (and sequence size 1) every layer runs exactly the unsplit code.
#pragma once

#include <memory>

#include <torch/torch.h>

#include "models/grid_parallel.h"
#include "models/model_spec.h"
#include "models/parameter_init.h"

namespace cr {

class Communicator;

// A rank's tensor-parallel group (and sequence-parallel group) as the layers see it.
struct TensorParallel {
  Communicator* group = nullptr;  // null with size 1, or for a layout computed without communicating
  int rank = 0;
  int size = 1;
  // split_gather: activations between attention and MLP are split along the sequence over the group.
  bool sequence_parallel = false;
  // The ranks sharing this rank's key/value heads when the model has fewer of them than `size`
  // (they hold copies and sum their gradients); null otherwise.
  std::shared_ptr<Communicator> kv_group;
  // all_to_all (Ulysses) or ring_attn: the sequence axis's group, this rank's place in it, and its size.
  Communicator* sequence_group = nullptr;
  int sequence_rank = 0;
  int sequence_size = 1;
  bool ring = false;  // ring_attn rather than all_to_all
  // 2d / 2.5d / 3d: this rank's grid of the tensor group; null in 1d.
  std::shared_ptr<const TensorGrid> grid;

  bool split() const { return size > 1; }
  // The parts attention heads split into: the grid's columns, else the tensor ranks.
  int head_parts() const { return grid ? grid->q() : size; }
  bool ulysses() const { return sequence_size > 1 && !ring; }
  bool ring_attention() const { return sequence_size > 1 && ring; }
};

// Collective over `group` (null: one rank): the layers' view of it for `spec`, with the key/value
// head sharing groups the layers need; `sequence`: the all_to_all sequence group (null: none).
// cr::Error naming the numbers when heads, key/value heads or d_ff do not split over the groups.
// ring: the sequence group runs ring attention rather than all-to-alls. `grid`: 2d / 2.5d / 3d
// over the group (a collective splitting the grid's groups); 1d by default.
TensorParallel make_tensor_parallel(Communicator* group, const ModelSpec& spec, bool sequence_parallel,
                                    Communicator* sequence = nullptr, bool ring = false,
                                    const TensorGridShape& grid = {});
// The same without communicators (plan, layouts of other ranks).
TensorParallel tensor_parallel_layout(int rank, int size, const ModelSpec& spec, bool sequence_parallel,
                                      int sequence_size = 1, bool ring = false, const TensorGridShape& grid = {});
// cr::Error naming the numbers unless each tensor rank's query and key/value heads split over
// `sequence_size` all_to_all ranks.
void check_sequence_heads(const ModelSpec& spec, int tensor_size, int sequence_size);
// cr::Error listing every dimension of `spec` that does not split over `size` tensor ranks.
void check_tensor_split(const ModelSpec& spec, int size);

// This rank's rows of a dimension of `total` split over the group: near-equal contiguous ranges
// (a vocabulary of 50257 splits unevenly).
std::pair<int64_t, int64_t> tensor_rows(int64_t total, const TensorParallel& tp);

// How an activation enters the tensor region of a column-parallel layer: copied (gradient
// all-reduced), or under sequence parallelism gathered along dim 1 (gradient reduce-scattered);
// on a grid, as an opening grid linear layer reads it (grid_enter).
torch::Tensor enter_tensor_region(const torch::Tensor& x, const TensorParallel& tp);
// How partial outputs of a row-parallel layer leave it: all-reduced, or reduce-scattered along dim 1.
torch::Tensor leave_tensor_region(const torch::Tensor& x, const TensorParallel& tp);
// The sequence dimension `dim` of a full-sequence tensor narrowed to this rank's part under
// sequence parallelism, any mode (ring_attn's part is its zigzag pair; unchanged without).
torch::Tensor local_sequence(const torch::Tensor& x, const TensorParallel& tp, int64_t dim = 1);
// all_to_all attention: (B, T / P, H, D) this rank's tokens of every local head -> (B, T, H / P, D)
// every token of this rank's part of the heads, and back (each the other's backward).
torch::Tensor sequence_to_heads(const torch::Tensor& x, const TensorParallel& tp);
torch::Tensor heads_to_sequence(const torch::Tensor& x, const TensorParallel& tp);
// Sums `param`'s gradient over `group` in backward, before it is accumulated (a hook, so that
// layers keep saving the parameter itself: ZeRO-3 re-gathers it into new storage for backward).
// Null or one-rank group: nothing.
void sum_gradient_over(torch::Tensor& param, std::shared_ptr<Communicator> group);
// A whole parameter used on this rank's part of the sequence (split_gather): its gradient is
// partial, so it is summed over the tensor group.
void sum_partial_gradient(torch::Tensor& param, const TensorParallel& tp);

// What the tensor-parallel linear layers share: their parameters, and in a grid mode their
// layout there (a weight strip, a bias column; grid_parallel.h).
class TensorParallelLinear : public DeferredModule {
 public:
  torch::Tensor weight;
  torch::Tensor bias;  // undefined without bias

 protected:
  void declare_grid(int64_t in_features, int64_t out_features, bool with_bias, int64_t parts, LinearRole role,
                    const TensorGrid& grid);
};

// y = x W^T + b with W's rows (outputs) split. fused_parts > 1: the output stacks that many
// equal parts (GPT-2's q, k, v), each split alike. Output: this rank's features of each part.
class ColumnParallelLinearImpl : public TensorParallelLinear {
 public:
  ColumnParallelLinearImpl(int64_t in_features, int64_t out_features, bool bias, const TensorParallel& tp,
                           int64_t fused_parts = 1);
  torch::Tensor forward(const torch::Tensor& x) { return project(enter_tensor_region(x, tp_)); }
  // For an input already in the tensor region: layers reading one input (q, k, v; gate and up)
  // enter it once, so it is gathered, and its gradient reduced, once.
  torch::Tensor project(const torch::Tensor& x_in_region);  // weight: (fused_parts * out / size, in) in 1d

 private:
  TensorParallel tp_;
  int64_t parts_;
};
TORCH_MODULE(ColumnParallelLinear);

// y = x W^T + b with W's columns (inputs) split; x holds this rank's input features.
// In 1d, weight (out, in / size) and the bias whole on every rank.
class RowParallelLinearImpl : public TensorParallelLinear {
 public:
  RowParallelLinearImpl(int64_t in_features, int64_t out_features, bool bias, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  TensorParallel tp_;
};
TORCH_MODULE(RowParallelLinear);

// Key/value projections of grouped-query attention: split by heads when there are at least as
// many heads as ranks, else each rank holds a copy of the head its query heads read.
class KeyValueLinearImpl : public TensorParallelLinear {
 public:
  KeyValueLinearImpl(const ModelSpec& spec, const TensorParallel& tp);
  torch::Tensor forward(const torch::Tensor& x) { return project(enter_tensor_region(x, tp_)); }
  torch::Tensor project(const torch::Tensor& x_in_region);  // as ColumnParallelLinear's
  int64_t local_heads() const { return local_heads_; }

 private:
  TensorParallel tp_;
  int64_t local_heads_;
};
TORCH_MODULE(KeyValueLinear);

class VocabParallelEmbeddingImpl : public DeferredModule {
 public:
  VocabParallelEmbeddingImpl(int64_t rows, int64_t dim, const TensorParallel& tp);
  // (B, T) tokens -> (B, T, dim), or (B, T / size, dim) under sequence parallelism.
  torch::Tensor forward(const torch::Tensor& tokens);
  int64_t first_row() const { return first_row_; }

  torch::Tensor weight;  // this rank's rows

 private:
  TensorParallel tp_;
  int64_t first_row_;
};
TORCH_MODULE(VocabParallelEmbedding);

// Mean cross-entropy of hidden @ W^T against targets, W (V, C) split by rows over the group:
// `weight` is rows [first_row, first_row + weight.size(0)) and `hidden` (N, C) is the same on
// every rank (its gradient here is this rank's part, summed by enter_tensor_region). On a grid,
// grid_cross_entropy's: hidden this rank's batch part, targets the whole micro-batch's, the
// value the micro-batch's mean (every rank's share summed).
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight, int64_t first_row,
                                           int64_t vocab, const torch::Tensor& targets, const TensorParallel& tp);
// The full logits hidden @ W^T (…, V) from the split rows, on every rank (generation).
torch::Tensor vocab_parallel_logits(const torch::Tensor& hidden, const torch::Tensor& weight, int64_t first_row,
                                    int64_t vocab, const TensorParallel& tp);

}  // namespace cr
