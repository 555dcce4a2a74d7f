// The zoo's embedding table: torch::nn::Embedding's parameter and lookup, declared without
// storage (parameter_init.h; weight N(0, 0.02)).
#pragma once

#include <torch/torch.h>

#include "models/parameter_init.h"

namespace cr {

class EmbeddingImpl : public DeferredModule {
 public:
  EmbeddingImpl(int64_t rows, int64_t dim) { weight = declare_parameter("weight", {rows, dim}, normal_init(kInitStd)); }
  torch::Tensor forward(const torch::Tensor& indices) { return torch::embedding(weight, indices); }

  torch::Tensor weight;  // (rows, dim)
};
TORCH_MODULE(Embedding);

}  // namespace cr
