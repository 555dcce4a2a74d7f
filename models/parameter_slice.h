// Where a rank's part of a parameter sits in the whole tensor. Tensor parallelism splits a
// parameter along one dimension; everything that names whole tensors (initialisation, Hugging
// Face import, checkpoints, export) addresses the whole tensor and maps this rank's elements
// into it with the runs below, so a slice is created, read and written without the rest.
#pragma once

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

// Calls fn(global_offset, local_offset, numel) for the contiguous runs of the whole tensor's
// row-major flattening that hold local elements [local_begin, local_begin + count), in order.
template <typename Fn>
void for_each_global_run(const ParameterSlice& slice, int64_t local_begin, int64_t count, Fn fn) {
  if (count <= 0) return;
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
