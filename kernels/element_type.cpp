#include "kernels/element_type.h"

#include <cstring>

namespace cr {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

namespace {

// fp32 magnitudes (sign bit cleared) at the edges of the fp16 range.
constexpr uint32_t kF32Infinity = 0x7F800000u;
constexpr uint32_t kF16OverflowThreshold = 0x477FF000u;  // 65520: the tie above 65504 rounds up
constexpr uint32_t kF16MinNormal = 0x38800000u;          // 2^-14
constexpr uint32_t kF16HalfMinSubnormal = 0x33000000u;   // 2^-25: ties to zero, below is zero
constexpr uint32_t kExponentRebias = (127u - 15u) << 23;

}  // namespace

const char* element_type_name(ElementType type) {
  switch (type) {
    case ElementType::F32: return "f32";
    case ElementType::F16: return "f16";
    case ElementType::BF16: return "bf16";
  }
  return "?";
}

float float_from_f16(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) return float_of(sign | kF32Infinity | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  return float_of(sign | ((exponent << 23) + kExponentRebias) | (mantissa << 13));
}

uint16_t f16_from_float(float value) {
  const uint32_t bits = bits_of(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > kF32Infinity) return sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu);
  if (magnitude >= kF16OverflowThreshold) return sign | 0x7C00u;
  if (magnitude >= kF16MinNormal) {
    // Drop 13 mantissa bits with round-half-even; a carry ripples into the exponent correctly.
    const uint32_t rebiased = magnitude - kExponentRebias;
    return sign | static_cast<uint16_t>((rebiased + 0x0FFFu + ((rebiased >> 13) & 1u)) >> 13);
  }
  if (magnitude <= kF16HalfMinSubnormal) return sign;
  // Subnormal result: the significand (implicit bit included) shifted to units of 2^-24.
  const uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - (magnitude >> 23);  // 14..24 in this range
  const uint32_t truncated = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  const bool round_up = remainder > half || (remainder == half && (truncated & 1u));
  return sign | static_cast<uint16_t>(truncated + (round_up ? 1u : 0u));
}

float float_from_bf16(uint16_t bits) { return float_of(static_cast<uint32_t>(bits) << 16); }

uint16_t bf16_from_float(float value) {
  const uint32_t bits = bits_of(value);
  if ((bits & 0x7FFFFFFFu) > kF32Infinity) return 0x7FC0u;
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace cr
