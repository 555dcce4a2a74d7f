// Where a rank's part of a parameter sits in the whole tensor. Tensor parallelism splits a
// parameter along one dimension (3d grids along a second one too); everything that names whole
// tensors (initialisation, Hugging Face import, checkpoints, export) addresses the whole tensor
// and maps this rank's elements into it with the runs below, so a slice is created, read and
// written without the rest.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/base/shape.h"

namespace cr {

struct ParameterSlice {
  std::vector<int64_t> global_shape;  // the whole tensor's shape
  int dim = -1;                       // the split dimension; -1: this rank holds the whole tensor
  // Fused parameters (GPT-2's c_attn stacks q, k, v along dim 0) split each of `parts` equal
  // parts alike: this rank holds [begin, begin + length) of every part, concatenated.
  int64_t parts = 1;
  int64_t begin = 0, length = 0;
  // A second split, of a later dimension (3d grids: a block of a weight's rows and columns):
  // [inner_begin, inner_begin + inner_length) of inner_dim; -1: none.
  int inner_dim = -1;
  int64_t inner_begin = 0, inner_length = 0;
  // Other ranks of the tensor group may hold the same values (layer norms, replicated key/value
  // heads): exactly one of them is primary, counts them in the gradient norm and writes them.
  bool primary = true;

  bool whole() const { return dim < 0; }
  std::vector<int64_t> local_shape() const;
};

// The whole tensor on every rank.
ParameterSlice whole_parameter(std::vector<int64_t> shape, bool primary = true);
// [begin, begin + length) of each of `parts` parts of `shape` along `dim`; cr::Error when it does not fit.
ParameterSlice split_parameter(std::vector<int64_t> shape, int dim, int64_t begin, int64_t length,
                               int64_t parts = 1);
// `slice` further cut to [begin, begin + length) of dimension `dim` (after its split dimension).
ParameterSlice split_again(ParameterSlice slice, int dim, int64_t begin, int64_t length);

// Where local element `local` of a slice split along one dimension sits in the whole tensor.
int64_t global_element(const ParameterSlice& slice, int64_t local);

// Calls fn(global_offset, local_offset, numel) for the contiguous runs of the whole tensor's
// row-major flattening that hold local elements [local_begin, local_begin + count), in order.
template <typename Fn>
void for_each_global_run(const ParameterSlice& slice, int64_t local_begin, int64_t count, Fn fn) {
  if (count <= 0) return;
  if (slice.inner_dim >= 0) {
    // Runs of inner_length x (the dimensions after inner_dim) elements, one per index of the
    // dimensions before it, which the first split maps as a tensor of those dimensions alone.
    ParameterSlice outer = slice;
    outer.inner_dim = -1;
    outer.global_shape.resize(static_cast<size_t>(slice.inner_dim));
    int64_t after = 1;
    for (size_t d = static_cast<size_t>(slice.inner_dim) + 1; d < slice.global_shape.size(); ++d) {
      after *= slice.global_shape[d];
    }
    const int64_t block = slice.inner_length * after, across = slice.global_shape[static_cast<size_t>(slice.inner_dim)];
    for (int64_t local = local_begin, end = local_begin + count; local < end;) {
      const int64_t offset = local % block, numel = std::min(block - offset, end - local);
      fn((global_element(outer, local / block) * across + slice.inner_begin) * after + offset, local, numel);
      local += numel;
    }
    return;
  }
  if (slice.whole()) {
    fn(local_begin, local_begin, count);
    return;
  }
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(slice.dim) + 1; d < slice.global_shape.size(); ++d) inner *= slice.global_shape[d];
  const int64_t global_dim = slice.global_shape[static_cast<size_t>(slice.dim)];
  const int64_t part_size = global_dim / slice.parts;
  const int64_t run = slice.length * inner;  // local elements of one part within one outer index
  const int64_t local_row = slice.parts * run;
  int64_t local = local_begin;
  const int64_t end = local_begin + count;
  while (local < end) {
    const int64_t outer = local / local_row, within = local % local_row;
    const int64_t part = within / run, offset = within % run;
    const int64_t numel = std::min(run - offset, end - local);
    const int64_t global = (outer * global_dim + part * part_size + slice.begin) * inner + offset;
    fn(global, local, numel);
    local += numel;
  }
}

}  // namespace cr
