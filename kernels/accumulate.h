// Adding 16-bit values into fp32 sums, element by element (gradient accumulation in mixed
// precision). LibTorch's mixed-dtype in-place add takes a generic casting path on the CPU, about
// ten times slower than this.
#pragma once

#include <cstdint>

#include "kernels/element_type.h"

namespace cr {

// sum[i] += x[i] widened to fp32 (exactly) for i < n; `type` is F16 or BF16.
void accumulate_widened(float* sum, const uint16_t* x, ElementType type, int64_t n);

}  // namespace cr
