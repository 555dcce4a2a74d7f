// 2d (Optimus / SUMMA), 2.5d (Tesseract) and 3d tensor parallelism: the grid a tensor group
// forms (parallel/tensor_grid.h), how parameters are laid out on it, and the operations with
// their conjugate communication that the zoo's layers run in these modes.
//
// Between blocks (the residual stream) a rank holds (B / batch_parts, T, C / q): batch part
// layer * q + row of each micro-batch and hidden column `column`.
//
// Linear layers come in pairs: an opening one reads the residual stream (q, k, v; the MLP's up
// projections), a closing one writes it (the attention output; the MLP's down projection).
//
// 2d and 2.5d run both alike, as SUMMA (C_ij = sum_k A_ik B_kj). Rank (row i, column j) holds a
// strip of the weight W (out, in): of the output block j, rows [i * out / q^2, (i + 1) * out /
// q^2), every input. The input's hidden parts are all-gathered along the grid row (SUMMA's
// broadcasts of A_ik; once for the layers reading one input), the strips of block j along the
// grid column (its broadcasts of B_kj) and the block multiplied locally; the output keeps the
// input's layout. Backward gathers the strips again and reduce-scatters the weight's gradient
// along the column and the input's along the row (SUMMA's ATB and ABT). 2.5d keeps a copy of
// each strip in every layer and sums its gradient over them.
//
// 3d (q^3 ranks, layer a, row b, column c) splits each weight into q^3 pieces: an opening layer
// gathers its input's batch parts along the grid column (batch block a, input block c), the
// weight block (output block b, input block c) from its q pieces along the depth, multiplies,
// and reduce-scatters the partial output along the grid row over the batch: between the pair a
// rank holds batch part a * q + c and hidden block b. The closing layer does the same with rows
// and columns swapped, back to the residual stream's layout. Its input and output are split
// q^2 ways, its weights q^3 ways.
//
// Parameters of one hidden part (biases, norms, learned positions) are copied over the batch
// parts holding that hidden part: their gradients are summed over those copies and the first
// copy is primary.
//
// Norms all-reduce their statistics along the grid row. Token embedding tables (and the LM head
// that shares them) split their rows over the batch group and their columns over the row, so a
// rank holds vocab x C / T of them: a lookup embeds every token of the micro-batch against the
// rank's rows and reduce-scatters over the batch group; the loss is grid_cross_entropy's.
#pragma once

#include <memory>
#include <utility>

#include <torch/torch.h>

#include "models/model_spec.h"
#include "models/parameter_slice.h"
#include "parallel/tensor_grid.h"

namespace cr {

class Communicator;

// A rank's grid and its groups; the groups are null for one rank or in a layout computed
// without communicating (plan).
struct TensorGrid {
  TensorGridShape shape;
  GridPosition at;
  std::shared_ptr<Communicator> row, column, depth, batch, transposed_batch;

  int q() const { return shape.q; }
  bool cube() const { return shape.mode == TensorMode::ThreeD; }
  int batch_parts() const { return shape.batch_parts(); }
  int batch_part() const { return cr::batch_part(shape, at); }
};

// The linear layer's place in its pair: it reads (Opening) or writes (Closing) the residual stream.
enum class LinearRole { Opening, Closing };

// Collective over `tensor_group` (its rank is the tensor rank): splits the grid's groups, every
// member in the same order.
std::shared_ptr<const TensorGrid> make_tensor_grid(Communicator* tensor_group, const TensorGridShape& shape);
std::shared_ptr<const TensorGrid> tensor_grid_layout(const TensorGridShape& shape, int tensor_rank);

// cr::Error listing every dimension of `spec` that does not split over the grid: heads and
// key/value heads over q, d_model and d_ff into q^2 strips, the vocabulary over the batch parts.
void check_grid_split(const ModelSpec& spec, const TensorGridShape& shape);

// A linear layer's weight (parts * out, in) as this rank's strip (2d, 2.5d; primary in layer 0)
// or piece (3d), of each of `parts` parts (GPT-2's fused q, k, v) alike.
ParameterSlice grid_weight_slice(int64_t out, int64_t in, int64_t parts, LinearRole role, const TensorGrid& grid);
// The hidden part of dimension `dim` of `shape` (of each of `parts` parts) that this rank holds
// of the activations a layer of `role` writes (Closing: the residual stream's column). Primary
// at the first copy.
ParameterSlice grid_hidden_slice(std::vector<int64_t> shape, int dim, int64_t parts, const TensorGrid& grid,
                                 LinearRole role = LinearRole::Closing);
// In backward, before the gradient accumulates: summed over the copies of a grid_hidden_slice
// parameter, or over 2.5d's copies of a weight strip (nothing elsewhere).
void sum_over_copies(torch::Tensor& param, const TensorGrid& grid, LinearRole role = LinearRole::Closing);
void sum_over_layers(torch::Tensor& param, const TensorGrid& grid);

// A linear layer of `role`'s input as it multiplies: 2d / 2.5d (..., C / q) -> (..., C), the row's
// hidden parts; 3d (B', ...) -> (q B', ...), the batch parts of the column (opening) or row
// (closing). Gathered along the group, the gradient reduce-scattered back.
torch::Tensor grid_enter(const torch::Tensor& x, LinearRole role, const TensorGrid& grid);
// y = x W^T + b for x from grid_enter, weight from grid_weight_slice and bias from
// grid_hidden_slice({parts * out}, 0, parts, grid, role) (or undefined): this rank's part of y
// in the layout a layer of `role` writes, each part's columns of this rank's hidden part.
torch::Tensor grid_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                          int64_t parts, LinearRole role, const TensorGrid& grid);

// A sum over the hidden dimension from this rank's partial sums: all-reduced along the row,
// and so is its gradient (every hidden part uses the total).
torch::Tensor grid_sum_hidden(const torch::Tensor& partial, const TensorGrid& grid);

// An embedding table (vocab, dim) as this rank's rows (its batch part's share of the vocabulary)
// of its hidden column; every rank's part is primary.
ParameterSlice grid_vocabulary_slice(int64_t vocab, int64_t dim, const TensorGrid& grid);
std::pair<int64_t, int64_t> grid_vocabulary_rows(int64_t vocab, const TensorGrid& grid);
// (B, T) tokens of the whole micro-batch -> (B / batch_parts, T, C / q), this rank's batch part,
// from the tables' parts (weight: rows [first_row, first_row + weight.size(0)) of its column).
torch::Tensor grid_embedding(const torch::Tensor& tokens, const torch::Tensor& weight, int64_t first_row,
                             const TensorGrid& grid);

// The LM loss: hidden (N, C / q) this rank's batch part, weight the output embedding's part as
// grid_vocabulary_slice lays it out, targets (N x batch_parts) of the whole micro-batch. Returns
// this rank's share of the micro-batch's mean: the cross-entropy of its column's 1/q of the
// tokens, over the micro-batch's token count. Gradients for hidden and weight.
torch::Tensor grid_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight, int64_t first_row,
                                 const torch::Tensor& targets, const TensorGrid& grid);
// The micro-batch's loss from the row's shares: its value is their sum (the same on every rank),
// its gradient that of this rank's share.
torch::Tensor grid_whole_loss(const torch::Tensor& share, const TensorGrid& grid);

}  // namespace cr
