// The AVX-512 path (16 lanes), compiled with -mavx512f; only called on CPUs that have it.
// bf16 rounding uses integer ops rather than AVX512_BF16's VCVTNEPS2BF16, which flushes
// subnormals to zero and would make this path differ from the others and from PyTorch.
#include <immintrin.h>

#include "kernels/adamw_simd.h"

namespace cr::adam_paths {
namespace {

struct Avx512 {
  using Vec = __m512;
  static constexpr int64_t kWidth = 16;
  static Vec broadcast(float x) { return _mm512_set1_ps(x); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Vec x) { _mm512_storeu_ps(p, x); }
  static Vec load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void store_f16(uint16_t* p, Vec x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // bf16 is the upper half of an fp32.
  static Vec load_bf16(const uint16_t* p) {
    const __m512i widened =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(widened, 16));
  }
  static void store_bf16(uint16_t* p, Vec x) {
    // Round to nearest even by adding 0x7FFF plus the kept lowest bit, as c10::BFloat16 does.
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i kept_lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i bias = _mm512_add_epi32(kept_lsb, _mm512_set1_epi32(0x7FFF));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
    const __mmask16 is_nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512i result = _mm512_mask_blend_epi32(is_nan, rounded, _mm512_set1_epi32(0x7FC0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(result));
  }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec sqrt(Vec x) { return _mm512_sqrt_ps(x); }
};

}  // namespace

void adam_range_avx512(const AdamBuffers& buffers, int64_t begin, int64_t end,
                       const AdamCoefficients& c) {
  adam_range<Avx512>(buffers, begin, end, c);
}

}  // namespace cr::adam_paths
