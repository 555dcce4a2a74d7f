#include "models/mixed_precision.h"

namespace cr {
namespace {

bool cpu_has_half_kernels() {
  static const bool supported = [] {
    try {
      auto a = torch::ones({2, 2}, torch::kHalf);
      torch::NoGradGuard no_grad;
      (void)torch::layer_norm(torch::mm(a, a), {2});
      return true;
    } catch (const c10::Error&) {
      return false;
    }
  }();
  return supported;
}

}  // namespace

torch::ScalarType activation_dtype(torch::ScalarType dtype, const torch::Device& device) {
  if (dtype == torch::kHalf && device.is_cpu() && !cpu_has_half_kernels()) return torch::kFloat;
  return dtype;
}

torch::Tensor as_activation(const torch::Tensor& x) { return x.to(activation_dtype(x.scalar_type(), x.device())); }

torch::Tensor cast_to_activation(const torch::Tensor& param, const torch::Tensor& activation) {
  if (!param.defined() || param.scalar_type() == activation.scalar_type()) return param;
  return param.to(activation.scalar_type());
}

bool widen_on_cpu(const torch::Tensor& x) { return x.is_cpu() && x.scalar_type() == torch::kBFloat16; }

}  // namespace cr
