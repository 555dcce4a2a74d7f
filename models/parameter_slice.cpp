#include "models/parameter_slice.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"

namespace cr {

std::vector<int64_t> ParameterSlice::local_shape() const {
  auto shape = global_shape;
  if (!whole()) shape[static_cast<size_t>(dim)] = parts * length;
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

}  // namespace cr
