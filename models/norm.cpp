#include "models/norm.h"

#include "models/mixed_precision.h"

namespace cr {

NormImpl::NormImpl(const ModelSpec& spec, int64_t dim, const TensorParallel& tp)
    : rms_(spec.norm == "rmsnorm"), eps_(spec.norm_eps), dim_(dim), grid_(tp.grid) {
  if (grid_) {
    weight = declare_parameter("weight", grid_hidden_slice({dim}, 0, 1, *grid_), constant_init(1.0));
    sum_over_copies(weight, *grid_);
    if (!rms_) {
      bias = declare_parameter("bias", grid_hidden_slice({dim}, 0, 1, *grid_), constant_init(0.0));
      sum_over_copies(bias, *grid_);
    }
    return;
  }
  weight = declare_parameter("weight", {dim}, constant_init(1.0));
  sum_partial_gradient(weight, tp);
  if (!rms_) {
    bias = declare_parameter("bias", {dim}, constant_init(0.0));
    sum_partial_gradient(bias, tp);
  }
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  if (grid_) return grid_forward(x);
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

torch::Tensor NormImpl::grid_forward(const torch::Tensor& x) {
  // In fp32 as the unsplit paths normalise; the statistics are sums over the row's hidden parts.
  auto xf = x.to(torch::kFloat);
  const double inv_dim = 1.0 / static_cast<double>(dim_);
  if (rms_) {
    xf = xf * torch::rsqrt(grid_sum_hidden(xf.pow(2).sum(-1, /*keepdim=*/true), *grid_) * inv_dim + eps_);
    return cast_to_activation(weight, x) * xf.to(x.scalar_type());
  }
  const auto centred = xf - grid_sum_hidden(xf.sum(-1, /*keepdim=*/true), *grid_) * inv_dim;
  const auto variance = grid_sum_hidden(centred.pow(2).sum(-1, /*keepdim=*/true), *grid_) * inv_dim;
  const auto y = centred * torch::rsqrt(variance + eps_) * weight.to(torch::kFloat) + bias.to(torch::kFloat);
  return y.to(x.scalar_type());
}

}  // namespace cr
