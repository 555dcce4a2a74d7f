#include "parallel/tensor_grid.h"

#include <cmath>

#include "core/base/error.h"

namespace cr {

TensorMode parse_tensor_mode(const std::string& text) {
  if (text == "1d") return TensorMode::OneD;
  if (text == "2d") return TensorMode::TwoD;
  if (text == "2.5d") return TensorMode::TwoAndHalfD;
  if (text == "3d") return TensorMode::ThreeD;
  fail("parallel.tensor.mode: unknown mode '{}' (1d, 2d, 2.5d, 3d)", text);
}

std::string tensor_mode_name(TensorMode mode) {
  switch (mode) {
    case TensorMode::OneD: return "1d";
    case TensorMode::TwoD: return "2d";
    case TensorMode::TwoAndHalfD: return "2.5d";
    case TensorMode::ThreeD: return "3d";
  }
  return "?";
}

TensorGridShape tensor_grid_shape(const std::string& mode_text, int size, int depth) {
  TensorGridShape shape;
  shape.mode = parse_tensor_mode(mode_text);
  if (shape.mode != TensorMode::TwoAndHalfD && depth != 1) {
    fail("parallel.tensor.depth {} applies to mode 2.5d (stacked grids); mode {} has depth 1", depth, mode_text);
  }
  if (!shape.grid()) {
    shape.q = size;
    return shape;
  }
  if (shape.mode == TensorMode::ThreeD) {
    const int q = static_cast<int>(std::lround(std::cbrt(static_cast<double>(size))));
    if (q * q * q != size || q < 2) {
      fail("parallel.tensor: mode 3d needs size = q^3 with q >= 2 (a q x q x q cube: 8, 27, 64, ...), got size {}",
           size);
    }
    shape.q = q;
    shape.depth = q;
    return shape;
  }
  if (depth < 1 || size % depth != 0) {
    fail("parallel.tensor: size {} is not a multiple of depth {} (2.5d needs size = q^2 x depth)", size, depth);
  }
  const int per_grid = size / depth;
  const int q = static_cast<int>(std::lround(std::sqrt(static_cast<double>(per_grid))));
  if (q * q != per_grid || q < 2) {
    if (shape.mode == TensorMode::TwoD) {
      fail("parallel.tensor: mode 2d needs size = q^2 with q >= 2 (a q x q grid: 4, 9, 16, ...), got size {}", size);
    }
    fail("parallel.tensor: mode 2.5d needs size = q^2 x depth with q >= 2, got size {} / depth {} = {}, not a "
         "square of at least 4", size, depth, per_grid);
  }
  shape.q = q;
  shape.depth = depth;
  return shape;
}

GridPosition grid_position(const TensorGridShape& shape, int tensor_rank) {
  CR_CHECK(tensor_rank >= 0 && tensor_rank < shape.size(), "tensor rank {} outside a grid of {}", tensor_rank,
           shape.size());
  if (!shape.grid()) return {0, 0, tensor_rank};
  const int q = shape.q;
  return {tensor_rank / (q * q), tensor_rank / q % q, tensor_rank % q};
}

int grid_rank(const TensorGridShape& shape, const GridPosition& at) {
  if (!shape.grid()) return at.column;
  return (at.layer * shape.q + at.row) * shape.q + at.column;
}

int batch_part(const TensorGridShape& shape, const GridPosition& at) {
  return shape.grid() ? at.layer * shape.q + at.row : 0;
}

namespace {

// The member of `group` at `index` in the group of the rank at `at`.
GridPosition member(const TensorGridShape& shape, GridPosition at, GridGroup group, int index) {
  switch (group) {
    case GridGroup::Row: at.column = index; break;
    case GridGroup::Column: at.row = index; break;
    case GridGroup::Depth: at.layer = index; break;
    case GridGroup::Batch:
      at.layer = index / shape.q;
      at.row = index % shape.q;
      break;
    case GridGroup::TransposedBatch:
      at.layer = index / shape.q;
      at.column = index % shape.q;
      break;
  }
  return at;
}

int group_size(const TensorGridShape& shape, GridGroup group) {
  if (!shape.grid()) return group == GridGroup::Row ? shape.q : 1;
  switch (group) {
    case GridGroup::Row:
    case GridGroup::Column: return shape.q;
    case GridGroup::Depth: return shape.depth;
    case GridGroup::Batch: return shape.q * shape.depth;
    case GridGroup::TransposedBatch: return shape.mode == TensorMode::ThreeD ? shape.q * shape.depth : 1;
  }
  return 1;
}

}  // namespace

std::vector<int> grid_group(const TensorGridShape& shape, int tensor_rank, GridGroup group) {
  const GridPosition at = grid_position(shape, tensor_rank);
  if (group_size(shape, group) == 1) return {tensor_rank};
  std::vector<int> out;
  for (int i = 0; i < group_size(shape, group); ++i) out.push_back(grid_rank(shape, member(shape, at, group, i)));
  return out;
}

int grid_color(const TensorGridShape& shape, int tensor_rank, GridGroup group) {
  // The group's first member names it.
  return grid_group(shape, tensor_rank, group).front();
}

int grid_key(const TensorGridShape& shape, int tensor_rank, GridGroup group) {
  const auto members = grid_group(shape, tensor_rank, group);
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == tensor_rank) return static_cast<int>(i);
  }
  return 0;
}

}  // namespace cr
