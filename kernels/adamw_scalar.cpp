// The portable path, compiled for baseline x86-64: one element at a time.
#include <cmath>

#include "kernels/adamw_simd.h"
#include "kernels/element_type.h"

namespace cr::adam_paths {
namespace {

struct Scalar {
  using Vec = float;
  static constexpr int64_t kWidth = 1;
  static Vec broadcast(float x) { return x; }
  static Vec load(const float* p) { return *p; }
  static void store(float* p, Vec x) { *p = x; }
  static Vec load_f16(const uint16_t* p) { return float_from_f16(*p); }
  static void store_f16(uint16_t* p, Vec x) { *p = f16_from_float(x); }
  static Vec load_bf16(const uint16_t* p) { return float_from_bf16(*p); }
  static void store_bf16(uint16_t* p, Vec x) { *p = bf16_from_float(x); }
  // Baseline x86-64 has no FMA instruction (a software fma is very slow): two roundings.
  static Vec fmadd(Vec a, Vec b, Vec c) { return a * b + c; }
  static Vec sqrt(Vec x) { return std::sqrt(x); }
};

}  // namespace

void adam_range_scalar(const AdamBuffers& buffers, int64_t begin, int64_t end,
                       const AdamCoefficients& c) {
  adam_range<Scalar>(buffers, begin, end, c);
}

}  // namespace cr::adam_paths
