#include "models/norm.h"

#include "models/mixed_precision.h"

namespace cr {

NormImpl::NormImpl(const ModelSpec& spec, int64_t dim, const TensorParallel& tp)
    : rms_(spec.norm == "rmsnorm"), eps_(spec.norm_eps) {
  weight = declare_parameter("weight", {dim}, constant_init(1.0));
  sum_partial_gradient(weight, tp);
  if (!rms_) {
    bias = declare_parameter("bias", {dim}, constant_init(0.0));
    sum_partial_gradient(bias, tp);
  }
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  if (!rms_) {
    if (widen_on_cpu(x)) {
      return torch::layer_norm(x.to(torch::kFloat), {weight.size(0)}, weight.to(torch::kFloat), bias.to(torch::kFloat), eps_)
          .to(x.scalar_type());
    }
    return torch::layer_norm(x, {weight.size(0)}, cast_to_activation(weight, x), cast_to_activation(bias, x), eps_);
  }
  // As Hugging Face's LlamaRMSNorm: normalise in fp32, scale in the input's dtype.
  auto xf = x.to(torch::kFloat);
  xf = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return cast_to_activation(weight, x) * xf.to(x.scalar_type());
}

}  // namespace cr
