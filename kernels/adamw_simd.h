// The Adam element loop, written once over a SIMD traits type S and included by each
// per-instruction-set translation unit (adamw_scalar.cpp, adamw_avx2.cpp, adamw_avx512.cpp).
//
// S must be declared in an unnamed namespace of the including unit: every template here is then
// instantiated with internal linkage, so code compiled for AVX-512 can never be merged by the
// linker into a path meant for an older CPU. For the same reason this header defines no
// non-template functions, and the loops call no inline library code (std::memcpy is libc's).
//
// S provides: Vec (with + - * / operators), kWidth (lanes), broadcast, load/store (fp32),
// load_f16/store_f16, load_bf16/store_bf16 (uint16_t storage, rounding to nearest even), fmadd
// (a * b + c) and sqrt.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/adamw_paths.h"

namespace cr::adam_paths {

template <ElementType T>
using Storage = std::conditional_t<T == ElementType::F32, float, uint16_t>;

enum class CopyOut { None, F16, BF16 };

template <class S, ElementType T>
typename S::Vec load_as_f32(const Storage<T>* p) {
  if constexpr (T == ElementType::F32) {
    return S::load(p);
  } else if constexpr (T == ElementType::F16) {
    return S::load_f16(p);
  } else {
    return S::load_bf16(p);
  }
}

template <class S, ElementType T>
void store_rounded(Storage<T>* p, typename S::Vec x) {
  if constexpr (T == ElementType::F32) {
    S::store(p, x);
  } else if constexpr (T == ElementType::F16) {
    S::store_f16(p, x);
  } else {
    S::store_bf16(p, x);
  }
}

// The coefficients broadcast to every lane once per range.
template <class S>
struct AdamLanes {
  using Vec = typename S::Vec;
  Vec beta1, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, sqrt_bias_correction2, eps,
      decay, l2, grad_scale;
  explicit AdamLanes(const AdamCoefficients& c)
      : beta1(S::broadcast(c.beta1)),
        one_minus_beta1(S::broadcast(c.one_minus_beta1)),
        beta2(S::broadcast(c.beta2)),
        one_minus_beta2(S::broadcast(c.one_minus_beta2)),
        neg_step_size(S::broadcast(c.neg_step_size)),
        sqrt_bias_correction2(S::broadcast(c.sqrt_bias_correction2)),
        eps(S::broadcast(c.eps)),
        decay(S::broadcast(c.decay)),
        l2(S::broadcast(c.l2)),
        grad_scale(S::broadcast(c.grad_scale)) {}
};

// One vector of elements. The operations, their order and their fp32 roundings are those of
// torch.optim's Adam/AdamW tensor ops (grad.add(p, wd); exp_avg.mul_(b1).add_(g, 1 - b1);
// exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2); p.mul_(1 - lr * wd); denom = sqrt(v) / sqrt(bc2) +
// eps; p.addcdiv_(m, denom, -step_size)), whose vectorised add fuses the multiply-add as fmadd does
// here.
template <class S, ElementType Param, ElementType Grad, CopyOut Copy, bool kL2>
inline void adam_vector(const AdamLanes<S>& k, Storage<Param>* param, const Storage<Grad>* grad,
                        float* exp_avg, float* exp_avg_sq, uint16_t* param_copy) {
  using Vec = typename S::Vec;
  Vec p = load_as_f32<S, Param>(param);
  Vec g = load_as_f32<S, Grad>(grad) * k.grad_scale;
  // Only Adam touches g with p: an infinite parameter must not turn AdamW's moments into NaN.
  if constexpr (kL2) g = S::fmadd(p, k.l2, g);
  const Vec m = S::fmadd(g, k.one_minus_beta1, S::load(exp_avg) * k.beta1);
  const Vec v = S::fmadd(g * k.one_minus_beta2, g, S::load(exp_avg_sq) * k.beta2);
  const Vec denom = S::sqrt(v) / k.sqrt_bias_correction2 + k.eps;
  p = p * k.decay + (k.neg_step_size * m) / denom;
  S::store(exp_avg, m);
  S::store(exp_avg_sq, v);
  store_rounded<S, Param>(param, p);
  if constexpr (Copy == CopyOut::F16) S::store_f16(param_copy, p);
  if constexpr (Copy == CopyOut::BF16) S::store_bf16(param_copy, p);
}

template <class S, ElementType Param, ElementType Grad, CopyOut Copy, bool kL2>
void adam_range_typed(const AdamBuffers& b, int64_t begin, int64_t end, const AdamCoefficients& c) {
  constexpr int64_t kWidth = S::kWidth;
  const AdamLanes<S> k(c);
  Storage<Param>* param = static_cast<Storage<Param>*>(b.param) + begin;
  const Storage<Grad>* grad = static_cast<const Storage<Grad>*>(b.grad) + begin;
  float* exp_avg = b.exp_avg + begin;
  float* exp_avg_sq = b.exp_avg_sq + begin;
  uint16_t* param_copy = Copy == CopyOut::None ? nullptr : b.param_copy + begin;
  const int64_t n = end - begin;
  const int64_t full = n - n % kWidth;
  for (int64_t i = 0; i < full; i += kWidth) {
    adam_vector<S, Param, Grad, Copy, kL2>(k, param + i, grad + i, exp_avg + i, exp_avg_sq + i,
                                           param_copy ? param_copy + i : nullptr);
  }
  const int64_t rest = n - full;
  if (rest == 0) return;
  // The last partial vector goes through zero-padded lane buffers, so it runs the same code
  // (zeros are harmless: v = 0 gives denom = eps).
  Storage<Param> param_tail[kWidth] = {};
  Storage<Grad> grad_tail[kWidth] = {};
  float exp_avg_tail[kWidth] = {}, exp_avg_sq_tail[kWidth] = {};
  uint16_t copy_tail[kWidth] = {};
  std::memcpy(param_tail, param + full, rest * sizeof(Storage<Param>));
  std::memcpy(grad_tail, grad + full, rest * sizeof(Storage<Grad>));
  std::memcpy(exp_avg_tail, exp_avg + full, rest * sizeof(float));
  std::memcpy(exp_avg_sq_tail, exp_avg_sq + full, rest * sizeof(float));
  adam_vector<S, Param, Grad, Copy, kL2>(k, param_tail, grad_tail, exp_avg_tail, exp_avg_sq_tail,
                                         copy_tail);
  std::memcpy(param + full, param_tail, rest * sizeof(Storage<Param>));
  std::memcpy(exp_avg + full, exp_avg_tail, rest * sizeof(float));
  std::memcpy(exp_avg_sq + full, exp_avg_sq_tail, rest * sizeof(float));
  if (param_copy) std::memcpy(param_copy + full, copy_tail, rest * sizeof(uint16_t));
}

template <class S, ElementType Param, CopyOut Copy, bool kL2>
void adam_range_for_grad(const AdamBuffers& b, int64_t begin, int64_t end,
                         const AdamCoefficients& c) {
  switch (b.grad_type) {
    case ElementType::F32:
      return adam_range_typed<S, Param, ElementType::F32, Copy, kL2>(b, begin, end, c);
    case ElementType::F16:
      return adam_range_typed<S, Param, ElementType::F16, Copy, kL2>(b, begin, end, c);
    case ElementType::BF16:
      return adam_range_typed<S, Param, ElementType::BF16, Copy, kL2>(b, begin, end, c);
  }
}

template <class S, bool kL2>
void adam_range_for_param(const AdamBuffers& b, int64_t begin, int64_t end,
                          const AdamCoefficients& c) {
  if (b.param_copy) {
    if (b.param_copy_type == ElementType::F16) {
      return adam_range_for_grad<S, ElementType::F32, CopyOut::F16, kL2>(b, begin, end, c);
    }
    return adam_range_for_grad<S, ElementType::F32, CopyOut::BF16, kL2>(b, begin, end, c);
  }
  switch (b.param_type) {
    case ElementType::F32:
      return adam_range_for_grad<S, ElementType::F32, CopyOut::None, kL2>(b, begin, end, c);
    case ElementType::F16:
      return adam_range_for_grad<S, ElementType::F16, CopyOut::None, kL2>(b, begin, end, c);
    case ElementType::BF16:
      return adam_range_for_grad<S, ElementType::BF16, CopyOut::None, kL2>(b, begin, end, c);
  }
}

// Expands the run-time element types (and Adam vs AdamW) into a specialised loop.
template <class S>
void adam_range(const AdamBuffers& b, int64_t begin, int64_t end, const AdamCoefficients& c) {
  if (c.l2 != 0.0f) return adam_range_for_param<S, true>(b, begin, end, c);
  adam_range_for_param<S, false>(b, begin, end, c);
}

}  // namespace cr::adam_paths
