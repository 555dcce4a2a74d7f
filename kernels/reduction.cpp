#include "kernels/reduction.h"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace cr {
namespace {

constexpr int64_t kReductionBlock = int64_t{1} << 16;
constexpr int kLanes = 8;  // independent accumulators, so the loop is not one long dependency chain

double block_sum_of_squares(const float* x, int64_t n) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) {
      const double value = x[i + lane];
      lanes[lane] += value * value;
    }
  }
  for (; i < n; ++i) lanes[i % kLanes] += static_cast<double>(x[i]) * x[i];
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  return sum;
}

}  // namespace

double sum_of_squares(const float* x, int64_t n) {
  const int64_t blocks = (n + kReductionBlock - 1) / kReductionBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kReductionBlock;
    partial[b] = block_sum_of_squares(x + begin, std::min(kReductionBlock, n - begin));
  }
  double sum = 0.0;
  for (double value : partial) sum += value;
  return sum;
}

}  // namespace cr
