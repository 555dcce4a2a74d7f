// Keys and values of the tokens a model has already seen, per layer, so that incremental
// decoding attends to them without recomputing them.
#pragma once

#include <utility>
#include <vector>

#include <torch/torch.h>

namespace cr {

class KVCache {
 public:
  explicit KVCache(int64_t n_layer);

  // Tokens seen so far: the next token's position. Valid between forward passes (during one,
  // earlier layers already hold the new tokens).
  int64_t length() const;
  int64_t length(int64_t layer) const;

  // Appends (B, H_kv, T_new, D) keys and values to `layer`'s and returns all of that layer's,
  // (B, H_kv, T_cached + T_new, D).
  std::pair<torch::Tensor, torch::Tensor> append(int64_t layer, const torch::Tensor& keys,
                                                 const torch::Tensor& values);

  void clear();

 private:
  std::vector<torch::Tensor> keys_, values_;
};

}  // namespace cr
