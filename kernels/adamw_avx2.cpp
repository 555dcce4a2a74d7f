// The AVX2 path (8 lanes), compiled with -mavx2 -mfma -mf16c; only called on CPUs that have them.
#include <immintrin.h>

#include "kernels/adamw_simd.h"

namespace cr::adam_paths {
namespace {

struct Avx2 {
  using Vec = __m256;
  static constexpr int64_t kWidth = 8;
  static Vec broadcast(float x) { return _mm256_set1_ps(x); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vec x) { _mm256_storeu_ps(p, x); }
  static Vec load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static void store_f16(uint16_t* p, Vec x) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  }
  // bf16 is the upper half of an fp32.
  static Vec load_bf16(const uint16_t* p) {
    const __m256i widened =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
  }
  static void store_bf16(uint16_t* p, Vec x) {
    // Round to nearest even by adding 0x7FFF plus the kept lowest bit, as c10::BFloat16 does.
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i kept_lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i bias = _mm256_add_epi32(kept_lsb, _mm256_set1_epi32(0x7FFF));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
    const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), is_nan);
    const __m128i packed =
        _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec sqrt(Vec x) { return _mm256_sqrt_ps(x); }
};

}  // namespace

void adam_range_avx2(const AdamBuffers& buffers, int64_t begin, int64_t end,
                     const AdamCoefficients& c) {
  adam_range<Avx2>(buffers, begin, end, c);
}

}  // namespace cr::adam_paths
