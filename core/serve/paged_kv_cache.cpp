#include "core/serve/paged_kv_cache.h"

#include "core/base/error.h"
#include "models/attention.h"

namespace cr {

PagedKVStore::PagedKVStore(int64_t n_layer, int64_t kv_heads, int64_t head_dim, int64_t num_blocks,
                           int64_t block_size, torch::TensorOptions options)
    : block_size_(block_size) {
  for (int64_t layer = 0; layer < n_layer; ++layer) {
    keys_.push_back(torch::zeros({num_blocks * block_size, kv_heads, head_dim}, options));
    values_.push_back(torch::zeros({num_blocks * block_size, kv_heads, head_dim}, options));
  }
}

int64_t PagedKVStore::block_bytes(int64_t n_layer, int64_t kv_heads, int64_t head_dim, int64_t block_size,
                                  torch::ScalarType dtype) {
  return 2 * n_layer * block_size * kv_heads * head_dim * static_cast<int64_t>(c10::elementSize(dtype));
}

void PagedKVStore::copy_block(BlockId from, BlockId to) {
  for (auto* tensors : {&keys_, &values_}) {
    for (auto& slots : *tensors) {
      const auto source = slots.narrow(0, int64_t{from} * block_size_, block_size_);
      slots.narrow(0, int64_t{to} * block_size_, block_size_).copy_(source);
    }
  }
}

std::vector<int64_t> slots_of(const std::vector<BlockId>& block_table, int64_t block_size, int64_t end) {
  CR_CHECK(end <= static_cast<int64_t>(block_table.size()) * block_size, "{} positions in {} blocks of {}", end,
           block_table.size(), block_size);
  std::vector<int64_t> slots(end);
  for (int64_t position = 0; position < end; ++position) {
    slots[position] = int64_t{block_table[position / block_size]} * block_size + position % block_size;
  }
  return slots;
}

PagedBatch::PagedBatch(PagedKVStore& store, std::vector<PagedSequence> sequences, torch::Device device)
    : store_(store), sequences_(std::move(sequences)) {
  std::vector<int64_t> positions, new_slots;
  for (const PagedSequence& sequence : sequences_) {
    CR_CHECK(static_cast<int64_t>(sequence.slots.size()) == sequence.first_position + sequence.count,
             "{} slots for positions up to {}", sequence.slots.size(), sequence.first_position + sequence.count);
    for (int64_t i = 0; i < sequence.count; ++i) {
      positions.push_back(sequence.first_position + i);
      new_slots.push_back(sequence.slots[sequence.first_position + i]);
    }
    sequence_slots_.push_back(torch::tensor(sequence.slots, torch::kLong).to(device));
  }
  positions_ = torch::tensor(positions, torch::kLong);
  new_slots_ = torch::tensor(new_slots, torch::kLong).to(device);
}

torch::Tensor PagedBatch::positions(int64_t, int64_t count) const {
  CR_CHECK(count == tokens(), "a pass of {} tokens over a batch of {}", count, tokens());
  return positions_;
}

torch::Tensor PagedBatch::attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                                 const torch::Tensor& v) {
  auto& keys = store_.keys(layer);
  auto& values = store_.values(layer);
  // (1, H_kv, N, D) -> (N, H_kv, D), the store's layout.
  keys.index_copy_(0, new_slots_, k[0].transpose(0, 1).to(keys.scalar_type()));
  values.index_copy_(0, new_slots_, v[0].transpose(0, 1).to(values.scalar_type()));
  std::vector<torch::Tensor> outputs;
  int64_t offset = 0;
  for (size_t s = 0; s < sequences_.size(); ++s) {
    const auto& slots = sequence_slots_[s];
    auto sequence_keys = keys.index_select(0, slots).transpose(0, 1).unsqueeze(0).to(q.scalar_type());
    auto sequence_values = values.index_select(0, slots).transpose(0, 1).unsqueeze(0).to(q.scalar_type());
    outputs.push_back(causal_attention(q.narrow(2, offset, sequences_[s].count), sequence_keys, sequence_values, 0.0));
    offset += sequences_[s].count;
  }
  return torch::cat(outputs, 2);
}

}  // namespace cr
