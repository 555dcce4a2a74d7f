// The rank grid of multi-dimensional tensor parallelism inside one tensor group: plain arithmetic
// on tensor ranks (no communicators), so layouts are computed, printed and tested without a job.
//
//   1d    Megatron: every tensor rank holds 1/T of each layer (models/tensor_parallel.h)
//   2d    Optimus: T = q^2 ranks in a q x q grid (SUMMA); activations split by batch over the
//         grid's rows and by hidden units over its columns
//   2.5d  Tesseract: T = q^2 * d ranks, d stacked q x q grids (layers); the batch splits over
//         layers and rows, weights are split like 2d within a layer and copied across layers
//   3d    T = q^3 ranks, a q x q x q cube (q layers of q x q); the batch splits over layers and
//         rows, hidden units over columns between blocks, and each weight into q^3 pieces
//
// A tensor rank reads its position as layer * q^2 + row * q + column: the ranks of a row (same
// layer and row) are consecutive, so the all-gathers of activations, which run in every linear
// layer, stay on the innermost (fastest) links.
#pragma once

#include <string>
#include <vector>

namespace cr {

enum class TensorMode { OneD, TwoD, TwoAndHalfD, ThreeD };

// "1d", "2d", "2.5d", "3d" -> the mode; cr::Error naming the valid modes otherwise.
TensorMode parse_tensor_mode(const std::string& text);
std::string tensor_mode_name(TensorMode mode);

struct TensorGridShape {
  TensorMode mode = TensorMode::OneD;
  int q = 1;      // grid side: rows = columns = q (1d: the tensor size)
  int depth = 1;  // stacked grids: 2.5d's depth, 3d's q; 1 otherwise

  bool grid() const { return mode != TensorMode::OneD; }
  int size() const { return grid() ? q * q * depth : q; }
  // The batch splits over layers x rows; hidden units over columns.
  int batch_parts() const { return grid() ? q * depth : 1; }
  int hidden_parts() const { return grid() ? q : 1; }
};

// The grid of `size` tensor ranks in `mode` with `depth` stacked grids. cr::Error naming the
// numbers unless 2d has size = q^2, 2.5d size = q^2 * depth and 3d size = q^3 (q >= 2 for
// all), and unless depth is 1 outside 2.5d.
TensorGridShape tensor_grid_shape(const std::string& mode, int size, int depth);

struct GridPosition {
  int layer = 0, row = 0, column = 0;
};

GridPosition grid_position(const TensorGridShape& shape, int tensor_rank);
int grid_rank(const TensorGridShape& shape, const GridPosition& at);
// Which of the batch_parts() parts of a micro-batch the rank holds: layer * q + row.
int batch_part(const TensorGridShape& shape, const GridPosition& at);

// The groups a rank belongs to, as tensor ranks ordered by their position in the group (which
// is their rank in its communicator):
//   row     same layer and row, by column: the hidden parts of one batch part
//   column  same layer and column, by row: a linear layer's weight strips within one grid
//   depth   same row and column, by layer: copies of one weight strip (2.5d)
//   batch   same column, by batch part: every copy of a hidden part of a replicated parameter
//   transposed_batch  same row, by layer and column (3d): the copies of a hidden part of the
//           activations between a block's paired linear layers, where rows and columns swap roles
enum class GridGroup { Row, Column, Depth, Batch, TransposedBatch };
std::vector<int> grid_group(const TensorGridShape& shape, int tensor_rank, GridGroup group);
// The communicator split of `group`: colour (which group) and key (position in it).
int grid_color(const TensorGridShape& shape, int tensor_rank, GridGroup group);
int grid_key(const TensorGridShape& shape, int tensor_rank, GridGroup group);

}  // namespace cr
