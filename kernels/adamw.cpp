#include "kernels/adamw.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/adamw_paths.h"
#include "kernels/cpu_features.h"

namespace cr {
namespace {

using adam_paths::AdamBuffers;
using adam_paths::AdamCoefficients;
using adam_paths::AdamRangeFn;

// Tiles start at multiples of this many elements: a whole number of 64-byte cache lines for every
// element type and of vectors for every path, so threads never share a line of an aligned buffer.
constexpr int64_t kTileQuantum = 64;
// Below this, starting the thread team costs more than the step itself.
constexpr int64_t kMinElementsForThreads = int64_t{1} << 15;

// The scalars PyTorch computes in double (bias corrections, step size, decay factor) and then
// rounds to fp32 when it applies them to fp32 tensors.
AdamCoefficients coefficients_for(const AdamStepParams& p) {
  if (p.step < 1) throw std::invalid_argument("adam_step: step must be >= 1 (it is 1-based)");
  const double lr = p.lr, beta1 = p.beta1, beta2 = p.beta2;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(p.step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(p.step));
  AdamCoefficients c;
  c.beta1 = p.beta1;
  c.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  c.beta2 = p.beta2;
  c.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  c.neg_step_size = static_cast<float>(-lr / bias_correction1);
  c.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
  c.eps = p.eps;
  c.decay = p.decoupled_weight_decay ? static_cast<float>(1.0 - lr * p.weight_decay) : 1.0f;
  c.l2 = p.decoupled_weight_decay ? 0.0f : p.weight_decay;
  c.grad_scale = p.grad_scale;
  return c;
}

AdamIsa widest_supported_isa() {
  if (adam_isa_supported(AdamIsa::Avx512)) return AdamIsa::Avx512;
  if (adam_isa_supported(AdamIsa::Avx2)) return AdamIsa::Avx2;
  return AdamIsa::Scalar;
}

AdamIsa isa_from_environment() {
  const char* requested = std::getenv("CR_ADAM_ISA");
  if (requested == nullptr || *requested == '\0') return widest_supported_isa();
  const std::optional<AdamIsa> isa = adam_isa_from_name(requested);
  if (!isa) {
    throw std::invalid_argument(std::string("CR_ADAM_ISA=") + requested +
                                ": expected scalar, avx2 or avx512");
  }
  if (!adam_isa_supported(*isa)) {
    throw std::runtime_error(std::string("CR_ADAM_ISA=") + requested +
                             ": this CPU lacks the instructions that path needs");
  }
  return *isa;
}

std::atomic<AdamIsa>& selected_isa() {
  static std::atomic<AdamIsa> isa{isa_from_environment()};
  return isa;
}

AdamRangeFn range_fn(AdamIsa isa) {
  switch (isa) {
    case AdamIsa::Avx512: return adam_paths::adam_range_avx512;
    case AdamIsa::Avx2: return adam_paths::adam_range_avx2;
    case AdamIsa::Scalar: break;
  }
  return adam_paths::adam_range_scalar;
}

// Each OpenMP thread updates one contiguous tile, so it streams its own part of every buffer.
void run_in_tiles(const AdamBuffers& buffers, int64_t n, const AdamStepParams& p) {
  if (n < 0) throw std::invalid_argument("adam_step: negative element count");
  if (n == 0) return;
  const AdamCoefficients c = coefficients_for(p);
  const AdamRangeFn range = range_fn(adam_isa());
  if (n < kMinElementsForThreads || omp_get_max_threads() == 1) {
    range(buffers, 0, n, c);
    return;
  }
  const int64_t quanta = (n + kTileQuantum - 1) / kTileQuantum;
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
    const int64_t begin = std::min(n, quanta * thread / threads * kTileQuantum);
    const int64_t end = std::min(n, quanta * (thread + 1) / threads * kTileQuantum);
    if (begin < end) range(buffers, begin, end, c);
  }
}

}  // namespace

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
               const AdamStepParams& p) {
  adam_step(param, ElementType::F32, grad, ElementType::F32, exp_avg, exp_avg_sq, n, p);
}

void adam_step(void* param, ElementType param_type, const void* grad, ElementType grad_type,
               float* exp_avg, float* exp_avg_sq, int64_t n, const AdamStepParams& p) {
  run_in_tiles({param, param_type, grad, grad_type, exp_avg, exp_avg_sq, nullptr, ElementType::F32},
               n, p);
}

void adam_step_master(float* master, const void* grad, ElementType grad_type, float* exp_avg,
                      float* exp_avg_sq, uint16_t* param_copy_out, ElementType copy_type, int64_t n,
                      const AdamStepParams& p) {
  if (copy_type == ElementType::F32) {
    throw std::invalid_argument("adam_step_master: the parameter copy must be F16 or BF16");
  }
  run_in_tiles(
      {master, ElementType::F32, grad, grad_type, exp_avg, exp_avg_sq, param_copy_out, copy_type},
      n, p);
}

const char* adam_isa_name(AdamIsa isa) {
  switch (isa) {
    case AdamIsa::Scalar: return "scalar";
    case AdamIsa::Avx2: return "avx2";
    case AdamIsa::Avx512: return "avx512";
  }
  return "?";
}

std::optional<AdamIsa> adam_isa_from_name(std::string_view name) {
  for (AdamIsa isa : {AdamIsa::Scalar, AdamIsa::Avx2, AdamIsa::Avx512}) {
    if (name == adam_isa_name(isa)) return isa;
  }
  return std::nullopt;
}

bool adam_isa_supported(AdamIsa isa) {
  const CpuFeatures& cpu = cpu_features();
  switch (isa) {
    case AdamIsa::Scalar: return true;
    case AdamIsa::Avx2: return cpu.avx2 && cpu.fma && cpu.f16c;
    case AdamIsa::Avx512: return cpu.avx512f;
  }
  return false;
}

AdamIsa adam_isa() { return selected_isa().load(std::memory_order_relaxed); }

const char* adam_isa_name() { return adam_isa_name(adam_isa()); }

void set_adam_isa(AdamIsa isa) {
  if (!adam_isa_supported(isa)) {
    throw std::invalid_argument(std::string("set_adam_isa: this CPU does not support ") +
                                adam_isa_name(isa));
  }
  selected_isa().store(isa, std::memory_order_relaxed);
}

}  // namespace cr
