// kernels/: compute kernels on raw pointers, free of LibTorch so that they can be unit-tested
// and reused by every optimizer placement (device, host, offloaded shards).
//
// Fused Adam / AdamW: one pass over parameters, gradients and both moments.
#pragma once

#include <cstdint>

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

}  // namespace cr
