// The zoo's embedding table: torch::nn::Embedding's parameter and lookup, declared without
// storage (parameter_init.h; weight N(0, 0.02)). On a 2d / 2.5d / 3d grid (learned positions) a rank
// holds its hidden column, copied over the batch parts.
#pragma once

#include <torch/torch.h>

#include "models/grid_parallel.h"
#include "models/parameter_init.h"

namespace cr {

class EmbeddingImpl : public DeferredModule {
 public:
  EmbeddingImpl(int64_t rows, int64_t dim, const TensorGrid* grid = nullptr) {
    if (!grid) {
      weight = declare_parameter("weight", {rows, dim}, normal_init(kInitStd));
      return;
    }
    weight = declare_parameter("weight", grid_hidden_slice({rows, dim}, 1, 1, *grid), normal_init(kInitStd));
    sum_over_copies(weight, *grid);
  }
  torch::Tensor forward(const torch::Tensor& indices) { return torch::embedding(weight, indices); }

  torch::Tensor weight;  // (rows, dim)
};
TORCH_MODULE(Embedding);

}  // namespace cr
