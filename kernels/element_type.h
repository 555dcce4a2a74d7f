// Element types of the buffers kernels read and write, and exact scalar conversions between the
// 16-bit formats and fp32 (the reference the vectorised conversions are tested against).
#pragma once

#include <cstdint>

namespace cr {

enum class ElementType : uint8_t { F32, F16, BF16 };

const char* element_type_name(ElementType type);

// IEEE binary16 <-> fp32. fp16 -> fp32 is exact; fp32 -> fp16 rounds to nearest even, overflows to
// infinity and keeps NaN a (quiet) NaN, as the F16C/AVX-512 conversion instructions do.
// An fp32 value's bit pattern and back (std::bit_cast before C++20).
uint32_t bits_of(float value);
float float_of(uint32_t bits);

float float_from_f16(uint16_t bits);
uint16_t f16_from_float(float value);

// bfloat16 <-> fp32. bf16 -> fp32 is exact; fp32 -> bf16 rounds to nearest even without flushing
// subnormals, and maps every NaN to the quiet NaN 0x7FC0, as PyTorch's c10::BFloat16 does.
float float_from_bf16(uint16_t bits);
uint16_t bf16_from_float(float value);

}  // namespace cr
