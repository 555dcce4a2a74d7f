#include "models/parameter_slice.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"

namespace cr {

std::vector<int64_t> ParameterSlice::local_shape() const {
  auto shape = global_shape;
  if (!whole()) shape[static_cast<size_t>(dim)] = parts * length;
  if (inner_dim >= 0) shape[static_cast<size_t>(inner_dim)] = inner_length;
  return shape;
}

ParameterSlice whole_parameter(std::vector<int64_t> shape, bool primary) {
  ParameterSlice slice;
  slice.global_shape = std::move(shape);
  slice.primary = primary;
  return slice;
}

ParameterSlice split_parameter(std::vector<int64_t> shape, int dim, int64_t begin, int64_t length, int64_t parts) {
  CR_CHECK(dim >= 0 && static_cast<size_t>(dim) < shape.size() && parts >= 1 &&
               shape[static_cast<size_t>(dim)] % parts == 0 && begin >= 0 && length >= 0 &&
               begin + length <= shape[static_cast<size_t>(dim)] / parts,
           "a slice [{}, {}) of {} parts along dimension {} does not fit shape [{}]", begin, begin + length, parts,
           dim, fmt::join(shape, ", "));
  ParameterSlice slice;
  slice.global_shape = std::move(shape);
  slice.dim = dim;
  slice.parts = parts;
  slice.begin = begin;
  slice.length = length;
  return slice;
}

int64_t global_element(const ParameterSlice& slice, int64_t local) {
  int64_t global = 0;
  for_each_global_run(slice, local, 1, [&](int64_t at, int64_t, int64_t) { global = at; });
  return global;
}

ParameterSlice split_again(ParameterSlice slice, int dim, int64_t begin, int64_t length) {
  CR_CHECK(!slice.whole() && slice.inner_dim < 0 && dim > slice.dim &&
               static_cast<size_t>(dim) < slice.global_shape.size() && begin >= 0 && length >= 0 &&
               begin + length <= slice.global_shape[static_cast<size_t>(dim)],
           "a second cut [{}, {}) along dimension {} does not fit shape [{}] split along {}", begin, begin + length,
           dim, fmt::join(slice.global_shape, ", "), slice.dim);
  slice.inner_dim = dim;
  slice.inner_begin = begin;
  slice.inner_length = length;
  return slice;
}

}  // namespace cr
