// The normalisation layer every architecture uses: LayerNorm (GPT-2, OPT) or RMSNorm (LLaMA),
// chosen by spec.norm. Parameters are named like torch's LayerNorm and Hugging Face's
// LlamaRMSNorm (weight, and bias for LayerNorm) so weight maps stay one-to-one; unit gain, zero
// bias initially.
#pragma once

#include <torch/torch.h>

#include "models/model_spec.h"
#include "models/parameter_init.h"
#include "models/tensor_parallel.h"

namespace cr {

class NormImpl : public DeferredModule {
 public:
  // Under sequence parallelism it normalises this rank's part of the sequence, so its weights'
  // gradients are summed over the tensor group. On a grid (2d, 2.5d, 3d) it holds its hidden column
  // and all-reduces the statistics along the grid row.
  NormImpl(const ModelSpec& spec, int64_t dim, const TensorParallel& tp = {});
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;
  torch::Tensor bias;  // undefined for RMSNorm

 private:
  torch::Tensor grid_forward(const torch::Tensor& x);

  bool rms_;
  double eps_;
  int64_t dim_;
  std::shared_ptr<const TensorGrid> grid_;
};
TORCH_MODULE(Norm);

}  // namespace cr
