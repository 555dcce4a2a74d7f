// Shared by adamw.cpp and the per-instruction-set translation units: the step's constants, the
// buffers of one call, and one entry point per path that updates the elements [begin, end).
#pragma once

#include <cstdint>

#include "kernels/element_type.h"

namespace cr::adam_paths {

// Everything the element loop needs, already in fp32 the way PyTorch rounds its scalars.
struct AdamCoefficients {
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float neg_step_size;          // -lr / bias_correction1
  float sqrt_bias_correction2;  // the denominator is sqrt(v) / sqrt(bias_correction2) + eps
  float eps;
  float decay;  // 1 - lr * weight_decay for AdamW, else 1
  float l2;     // weight_decay for Adam, else 0
  float grad_scale;
};

struct AdamBuffers {
  void* param;
  ElementType param_type;
  const void* grad;
  ElementType grad_type;
  float* exp_avg;
  float* exp_avg_sq;
  uint16_t* param_copy;  // null, or the F16/BF16 copy of fp32 parameters
  ElementType param_copy_type;
};

using AdamRangeFn = void (*)(const AdamBuffers& buffers, int64_t begin, int64_t end,
                             const AdamCoefficients& c);

void adam_range_scalar(const AdamBuffers& buffers, int64_t begin, int64_t end,
                       const AdamCoefficients& c);
void adam_range_avx2(const AdamBuffers& buffers, int64_t begin, int64_t end,
                     const AdamCoefficients& c);
void adam_range_avx512(const AdamBuffers& buffers, int64_t begin, int64_t end,
                       const AdamCoefficients& c);

}  // namespace cr::adam_paths
