// 2d (Optimus / SUMMA) and 2.5d (Tesseract) tensor parallelism: the grid a tensor group forms
// (parallel/tensor_grid.h), how parameters are laid out on it, and the operations with their
// conjugate communication that the zoo's layers run in these modes.
//
// Activations: (B / batch_parts, T, C / q). A rank holds batch part layer * q + row of each
// micro-batch and hidden column `column` (for attention: heads [column * H / q, ...)).
//
// Linear layers (SUMMA: C_ij = sum_k A_ik B_kj). Rank (row i, column j) holds a strip of the
// weight W (out, in): of the output block j, rows [i * out / q^2, (i + 1) * out / q^2), every
// input. The input's hidden parts are all-gathered along the grid row (SUMMA's broadcasts of
// A_ik; once for the layers reading one input: q, k, v; gate, up), the strips of block j along
// the grid column (its broadcasts of B_kj), and the block multiplied locally. Backward gathers
// the strips again and reduce-scatters the weight's gradient along the column and the input's
// along the row (SUMMA's ATB and ABT). One contiguous slice per rank: checkpoints,
// initialisation, Hugging Face import and ZeRO see an ordinary row split. 2.5d keeps a copy of
// each strip in every layer and sums its gradient over them.
//
// Parameters of one hidden part (biases, norms, embedding tables split by hidden columns, as
// the LM head that shares them) are copied over the batch parts: their gradients are summed over
// the batch group, the copy at batch part 0 is primary.
//
// Norms all-reduce their statistics along the grid row. The LM head forms each vocabulary
// part's logits as a reduce-scatter along the row (SUMMA's ABT for C = A B^T) and its loss as
// the vocab-parallel one, so a (rows x vocab / q) chunk is the largest buffer.
#pragma once

#include <memory>

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
  std::shared_ptr<Communicator> row, column, depth, batch;

  int q() const { return shape.q; }
  int batch_parts() const { return shape.batch_parts(); }
  int batch_part() const { return cr::batch_part(shape, at); }
};

// Collective over `tensor_group` (its rank is the tensor rank): splits the row, column, depth
// and batch groups, every member in the same order.
std::shared_ptr<const TensorGrid> make_tensor_grid(Communicator* tensor_group, const TensorGridShape& shape);
std::shared_ptr<const TensorGrid> tensor_grid_layout(const TensorGridShape& shape, int tensor_rank);

// cr::Error listing every dimension of `spec` that does not split over the grid: heads and
// key/value heads over q columns, d_model and d_ff over q^2 strips, the vocabulary over q.
void check_grid_split(const ModelSpec& spec, const TensorGridShape& shape);

// A linear layer's weight (parts * out, in) as this rank's strip: of each of `parts` parts
// (GPT-2's fused q, k, v) the strip of output block `column`; primary in layer 0.
ParameterSlice grid_weight_slice(int64_t out, int64_t in, int64_t parts, const TensorGrid& grid);
// Hidden column `column` of dimension `dim` of `shape` (of each of `parts` parts): biases, norms,
// embedding tables. Primary at batch part 0.
ParameterSlice grid_hidden_slice(std::vector<int64_t> shape, int dim, int64_t parts, const TensorGrid& grid);
// The gradient summed over the ranks holding copies, in backward before it accumulates: the
// batch group for grid_hidden_slice parameters, the depth group for weight strips.
void sum_over_batch_copies(torch::Tensor& param, const TensorGrid& grid);
void sum_over_layers(torch::Tensor& param, const TensorGrid& grid);

// This rank's batch part of a (B, ...) micro-batch; cr::Error when B does not split.
torch::Tensor grid_batch_part(const torch::Tensor& x, const TensorGrid& grid);

// (..., C / q) -> (..., C): the row's hidden parts gathered; the gradient reduce-scattered back.
torch::Tensor grid_gather_hidden(const torch::Tensor& x, const TensorGrid& grid);
// y = x W^T + b: x (..., in) from grid_gather_hidden, weight this rank's strip
// (parts * out / q^2, in), bias (parts * out / q) or undefined -> (..., parts * out / q), each
// part's columns of block `column`.
torch::Tensor grid_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                          int64_t parts, const TensorGrid& grid);

// A sum over the hidden dimension from this rank's partial sums: all-reduced along the row,
// and so is its gradient (every hidden part uses the total).
torch::Tensor grid_sum_hidden(const torch::Tensor& partial, const TensorGrid& grid);

// The LM loss of this rank's batch part: hidden (N, C / q), weight (vocab, C / q) the hidden
// column of the output embedding, targets (N). Returns this part's share of the micro-batch's
// mean, sum of its rows' cross-entropy / (N x batch_parts), with gradients for hidden and weight.
torch::Tensor grid_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                                 int64_t vocab, const TensorGrid& grid);
// The micro-batch's loss from the batch parts' shares: its value is their sum (the same on every
// rank), its gradient that of this rank's share.
torch::Tensor grid_whole_loss(const torch::Tensor& share, const TensorGrid& grid);

}  // namespace cr
