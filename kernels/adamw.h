// kernels/: compute kernels on raw pointers, free of LibTorch so that they can be unit-tested
// and reused by every optimizer placement (device, host, offloaded shards).
//
// Fused Adam / AdamW: one pass over parameters, gradients and both moments, with PyTorch's
// arithmetic. Parameters and gradients may be fp32, fp16 or bf16 (computed in fp32, stored rounded
// to nearest even); the moments are always fp32. Work is split over the OpenMP threads in
// contiguous tiles, and each tile runs the widest path the CPU supports (AVX-512, AVX2, scalar).
// Buffers must not overlap one another.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "kernels/element_type.h"

namespace cr {

struct AdamStepParams {
  float lr = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled_weight_decay = true;  // AdamW; false: L2 penalty added to the gradient (Adam)
  int64_t step = 1;                    // 1-based, for bias correction
  float grad_scale = 1.0f;             // multiplies every gradient (clipping, loss-scale undo)
};

// Updates n fp32 parameters in place with PyTorch's Adam/AdamW arithmetic.
void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
               const AdamStepParams& p);

// The same update for parameters and gradients of any ElementType; low-precision parameters are
// updated in place and rounded to nearest even.
void adam_step(void* param, ElementType param_type, const void* grad, ElementType grad_type,
               float* exp_avg, float* exp_avg_sq, int64_t n, const AdamStepParams& p);

// Mixed precision: updates fp32 master weights and, in the same pass, writes their rounding to
// copy_type (F16 or BF16) into param_copy_out, the weights the model computes with.
void adam_step_master(float* master, const void* grad, ElementType grad_type, float* exp_avg,
                      float* exp_avg_sq, uint16_t* param_copy_out, ElementType copy_type, int64_t n,
                      const AdamStepParams& p);

// Code paths, one per instruction set.
enum class AdamIsa : uint8_t { Scalar, Avx2, Avx512 };

const char* adam_isa_name(AdamIsa isa);  // "scalar", "avx2", "avx512"
std::optional<AdamIsa> adam_isa_from_name(std::string_view name);
bool adam_isa_supported(AdamIsa isa);  // Avx2 needs AVX2+FMA+F16C; Avx512 needs AVX-512F

// The path every step uses: the widest supported one, or the one the environment variable
// CR_ADAM_ISA (scalar|avx2|avx512) names, read on first use; an unknown or unsupported name throws.
AdamIsa adam_isa();
const char* adam_isa_name();

// Makes every later step in this process use `isa` (tests, benchmarks); throws if unsupported.
void set_adam_isa(AdamIsa isa);

}  // namespace cr
