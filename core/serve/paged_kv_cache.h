// The paged KV cache's memory and one iteration's batch over it. The store holds, per layer,
// keys and values for num_blocks x block_size token slots as (slots, H_kv, D) tensors; a
// PagedBatch feeds the new tokens of many sequences, of any lengths, as one packed row through
// the model: every linear layer sees all of them at once, and each sequence's attention reads
// its own keys and values through its block table, without padding to the longest.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "core/serve/kv_block_manager.h"
#include "models/kv_cache.h"

namespace cr {

class PagedKVStore {
 public:
  // Slots for `kv_heads` key/value heads of `head_dim` (this rank's heads under tensor parallelism).
  PagedKVStore(int64_t n_layer, int64_t kv_heads, int64_t head_dim, int64_t num_blocks, int64_t block_size,
               torch::TensorOptions options);
  // Bytes of one block over all layers, keys and values.
  static int64_t block_bytes(int64_t n_layer, int64_t kv_heads, int64_t head_dim, int64_t block_size,
                             torch::ScalarType dtype);

  int64_t block_size() const { return block_size_; }
  torch::Tensor& keys(int64_t layer) { return keys_.at(layer); }
  torch::Tensor& values(int64_t layer) { return values_.at(layer); }
  // Copy-on-write: block `to` gets block `from`'s slots in every layer.
  void copy_block(BlockId from, BlockId to);

 private:
  int64_t block_size_;
  std::vector<torch::Tensor> keys_, values_;  // (num_blocks * block_size, H_kv, D) per layer
};

// One sequence's part of a batch: `count` new tokens from position `first_position`, and the
// slot (block * block_size + offset) of each of its positions 0 .. first_position + count - 1.
struct PagedSequence {
  int64_t first_position = 0;
  int64_t count = 0;
  std::vector<int64_t> slots;
};

// The slots of positions [0, end) of a sequence with this block table.
std::vector<int64_t> slots_of(const std::vector<BlockId>& block_table, int64_t block_size, int64_t end);

class PagedBatch final : public KVCache {
 public:
  // Tensors of the batch go to `device`, the store's.
  PagedBatch(PagedKVStore& store, std::vector<PagedSequence> sequences, torch::Device device);

  int64_t tokens() const { return positions_.size(0); }
  torch::Tensor positions(int64_t layer, int64_t count) const override;
  // q (1, H, N, D), k and v (1, H_kv, N, D) for the N packed tokens.
  torch::Tensor attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) override;

 private:
  PagedKVStore& store_;
  std::vector<PagedSequence> sequences_;
  torch::Tensor positions_, new_slots_;  // (N)
  std::vector<torch::Tensor> sequence_slots_;
};

}  // namespace cr
