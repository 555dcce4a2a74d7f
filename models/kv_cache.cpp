#include "models/kv_cache.h"

#include <algorithm>

#include "models/attention.h"

namespace cr {

ContiguousKVCache::ContiguousKVCache(int64_t n_layer) : keys_(n_layer), values_(n_layer) {}

int64_t ContiguousKVCache::length() const {
  int64_t longest = 0;
  for (int64_t layer = 0; layer < static_cast<int64_t>(keys_.size()); ++layer) {
    longest = std::max(longest, length(layer));
  }
  return longest;
}

int64_t ContiguousKVCache::length(int64_t layer) const {
  const auto& keys = keys_.at(layer);
  return keys.defined() ? keys.size(2) : 0;
}

torch::Tensor ContiguousKVCache::positions(int64_t layer, int64_t count) const {
  const int64_t first = length(layer);
  return torch::arange(first, first + count, torch::kLong);
}

torch::Tensor ContiguousKVCache::attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& keys,
                                        const torch::Tensor& values) {
  auto& cached_keys = keys_.at(layer);
  auto& cached_values = values_.at(layer);
  auto all_keys = cached_keys.defined() ? torch::cat({cached_keys, keys}, 2) : keys;
  auto all_values = cached_values.defined() ? torch::cat({cached_values, values}, 2) : values;
  // Stored detached: the cache outlives the graph of the pass that filled it.
  cached_keys = all_keys.detach();
  cached_values = all_values.detach();
  return causal_attention(q, all_keys, all_values, 0.0);
}

void ContiguousKVCache::clear() {
  for (auto& k : keys_) k = torch::Tensor();
  for (auto& v : values_) v = torch::Tensor();
}

}  // namespace cr
