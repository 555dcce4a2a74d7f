// Tensor shapes as plain data.
#pragma once

#include <cstdint>
#include <vector>

namespace cr {

// The number of elements of a tensor of `shape` (1 for a scalar).
inline int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace cr
