// The normalisation layer every architecture uses: LayerNorm (GPT-2, OPT) or RMSNorm (LLaMA),
// chosen by spec.norm. Parameters are named like torch's LayerNorm and Hugging Face's
// LlamaRMSNorm (weight, and bias for LayerNorm) so weight maps stay one-to-one.
#pragma once

#include <torch/torch.h>

#include "models/model_spec.h"

namespace cr {

class NormImpl : public torch::nn::Module {
 public:
  NormImpl(const ModelSpec& spec, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  void reset_parameters();  // unit gain, zero bias

  torch::Tensor weight;
  torch::Tensor bias;  // undefined for RMSNorm

 private:
  bool rms_;
  double eps_;
};
TORCH_MODULE(Norm);

}  // namespace cr
