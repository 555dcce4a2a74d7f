// What a model's attention layers use while decoding incrementally: the positions of the tokens
// a pass feeds, and the attention of their queries over every key and value cached before them
// (the pass's own joining the cache). ContiguousKVCache holds one batch of sequences of one
// length; serving's paged cache (core/serve) holds many sequences of any lengths in blocks.
#pragma once

#include <utility>
#include <vector>

#include <torch/torch.h>

namespace cr {

class KVCache {
 public:
  virtual ~KVCache() = default;
  // (T) int64 positions of the T tokens this pass feeds to `layer`: the same for every layer.
  virtual torch::Tensor positions(int64_t layer, int64_t count) const = 0;
  // q (B, H, T, D) and this pass's k, v (B, H_kv, T, D) of `layer`: caches k and v and returns the
  // causal attention of q over all of the layer's keys and values, (B, H, T, D).
  virtual torch::Tensor attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v) = 0;
};

// Keys and values per layer as one (B, H_kv, T, D) tensor each, grown by concatenation.
class ContiguousKVCache final : public KVCache {
 public:
  explicit ContiguousKVCache(int64_t n_layer);

  // Tokens seen so far: the next token's position. Valid between forward passes (during one,
  // earlier layers already hold the new tokens).
  int64_t length() const;
  int64_t length(int64_t layer) const;

  torch::Tensor positions(int64_t layer, int64_t count) const override;
  torch::Tensor attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) override;

  void clear();

 private:
  std::vector<torch::Tensor> keys_, values_;
};

}  // namespace cr
