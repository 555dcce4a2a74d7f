#include "kernels/accumulate.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace cr {
namespace {

constexpr int64_t kAccumulateBlock = int64_t{1} << 16;

// bf16 is the upper half of an fp32: widening is a shift, which the compiler vectorises.
void accumulate_bf16(float* sum, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(x[i]) << 16;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    sum[i] += value;
  }
}

void accumulate_f16(float* sum, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) sum[i] += float_from_f16(x[i]);
}

}  // namespace

void accumulate_widened(float* sum, const uint16_t* x, ElementType type, int64_t n) {
  if (type == ElementType::F32) throw std::invalid_argument("accumulate_widened: x must be F16 or BF16");
  const auto block = type == ElementType::BF16 ? accumulate_bf16 : accumulate_f16;
  const int64_t blocks = (n + kAccumulateBlock - 1) / kAccumulateBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kAccumulateBlock;
    block(sum + begin, x + begin, std::min(kAccumulateBlock, n - begin));
  }
}

}  // namespace cr
