// Reductions whose result depends only on the data, not on the thread count: the input is cut
// into fixed blocks, each summed in double in a fixed order, and the block sums added in order.
// Gradient norms use it so that every ZeRO stage and rank count clips by the same factor.
#pragma once

#include <cstdint>

namespace cr {

// Sum of x[i]^2 over n fp32 values, accumulated in double; +inf or NaN if any value is.
double sum_of_squares(const float* x, int64_t n);

}  // namespace cr
