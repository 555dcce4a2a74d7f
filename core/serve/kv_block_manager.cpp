#include "core/serve/kv_block_manager.h"

#include <algorithm>

#include "core/base/error.h"

namespace cr {

KvBlockManager::KvBlockManager(int64_t num_blocks, int64_t block_size)
    : block_size_(block_size), ref_counts_(num_blocks, 0), filled_(num_blocks, 0) {
  CR_CHECK(num_blocks > 0 && block_size > 0, "KvBlockManager: {} blocks of {} slots", num_blocks, block_size);
  // Taken from the back: block 0 first.
  for (int64_t block = num_blocks - 1; block >= 0; --block) free_.push_back(static_cast<BlockId>(block));
}

KvBlockManager::Sequence& KvBlockManager::sequence_at(SequenceId sequence) {
  auto found = sequences_.find(sequence);
  CR_CHECK(found != sequences_.end(), "KvBlockManager: no sequence {}", sequence);
  return found->second;
}

const KvBlockManager::Sequence& KvBlockManager::sequence_at(SequenceId sequence) const {
  return const_cast<KvBlockManager*>(this)->sequence_at(sequence);
}

BlockId KvBlockManager::take_block() {
  CR_CHECK(!free_.empty(), "KvBlockManager: no free block");
  const BlockId block = free_.back();
  free_.pop_back();
  ref_counts_[block] = 1;
  filled_[block] = 0;
  return block;
}

void KvBlockManager::release(BlockId block) {
  CR_CHECK(ref_counts_[block] > 0, "KvBlockManager: block {} released while free", block);
  if (--ref_counts_[block] > 0) return;
  if (auto key = key_of_block_.find(block); key != key_of_block_.end()) {
    full_blocks_.erase(key->second);
    key_of_block_.erase(key);
  }
  filled_[block] = 0;
  free_.push_back(block);
}

KvBlockManager::BlockKey KvBlockManager::key_of(const Sequence& sequence, size_t block_index) const {
  const BlockId previous = block_index == 0 ? -1 : sequence.blocks[block_index - 1];
  const auto first = sequence.tokens.begin() + static_cast<int64_t>(block_index) * block_size_;
  return {previous, std::vector<int64_t>(first, first + block_size_)};
}

int64_t KvBlockManager::add_sequence(SequenceId sequence, std::vector<int64_t> tokens) {
  CR_CHECK(!has_sequence(sequence), "KvBlockManager: sequence {} exists", sequence);
  CR_CHECK(!tokens.empty(), "KvBlockManager: sequence {} has no tokens", sequence);
  Sequence& added = sequences_[sequence];
  added.tokens = std::move(tokens);
  const size_t shareable = (added.tokens.size() - 1) / static_cast<size_t>(block_size_);
  for (size_t index = 0; index < shareable; ++index) {
    auto found = full_blocks_.find(key_of(added, index));
    if (found == full_blocks_.end()) break;
    ++ref_counts_[found->second];
    added.blocks.push_back(found->second);
  }
  added.computed = static_cast<int64_t>(added.blocks.size()) * block_size_;
  return added.computed;
}

void KvBlockManager::fork(SequenceId parent, SequenceId child) {
  CR_CHECK(!has_sequence(child), "KvBlockManager: sequence {} exists", child);
  Sequence copy = sequence_at(parent);
  for (BlockId block : copy.blocks) ++ref_counts_[block];
  sequences_.emplace(child, std::move(copy));
}

void KvBlockManager::append_tokens(SequenceId sequence, const std::vector<int64_t>& tokens) {
  auto& held = sequence_at(sequence).tokens;
  held.insert(held.end(), tokens.begin(), tokens.end());
}

int64_t KvBlockManager::blocks_to_reserve(SequenceId sequence, int64_t count) const {
  const Sequence& held = sequence_at(sequence);
  const bool copy = held.computed % block_size_ != 0 && ref_counts_[held.blocks.back()] > 1;
  return (copy ? 1 : 0) + blocks_for(held.computed + count, block_size_) - static_cast<int64_t>(held.blocks.size());
}

std::optional<SlotReservation> KvBlockManager::reserve(SequenceId sequence, int64_t count) {
  Sequence& held = sequence_at(sequence);
  CR_CHECK(count >= 1 && held.computed + count <= static_cast<int64_t>(held.tokens.size()),
           "KvBlockManager: sequence {} reserves {} positions after {} of {} tokens", sequence, count, held.computed,
           held.tokens.size());
  if (blocks_to_reserve(sequence, count) > free_blocks()) return std::nullopt;
  SlotReservation reservation;
  reservation.first_position = held.computed;
  if (held.computed % block_size_ != 0 && ref_counts_[held.blocks.back()] > 1) {
    const BlockId shared = held.blocks.back();
    const BlockId own = take_block();
    filled_[own] = static_cast<int32_t>(held.computed % block_size_);
    reservation.copies.push_back({shared, own});
    release(shared);
    held.blocks.back() = own;
  }
  for (int64_t position = held.computed; position < held.computed + count; ++position) {
    const size_t index = static_cast<size_t>(position / block_size_);
    if (index == held.blocks.size()) held.blocks.push_back(take_block());
    const BlockId block = held.blocks[index];
    const auto offset = static_cast<int32_t>(position % block_size_);
    reservation.slots.push_back({block, offset});
    filled_[block] = std::max(filled_[block], offset + 1);
    // A block that becomes full is shared with later sequences of the same prefix; the first
    // block of a key keeps it.
    if (offset + 1 == block_size_ && !key_of_block_.count(block)) {
      BlockKey key = key_of(held, index);
      if (full_blocks_.emplace(key, block).second) key_of_block_.emplace(block, std::move(key));
    }
  }
  held.computed += count;
  return reservation;
}

void KvBlockManager::free(SequenceId sequence) {
  const Sequence& held = sequence_at(sequence);
  for (auto block = held.blocks.rbegin(); block != held.blocks.rend(); ++block) release(*block);
  sequences_.erase(sequence);
}

const std::vector<BlockId>& KvBlockManager::block_table(SequenceId sequence) const {
  return sequence_at(sequence).blocks;
}

int64_t KvBlockManager::computed_tokens(SequenceId sequence) const { return sequence_at(sequence).computed; }

const std::vector<int64_t>& KvBlockManager::tokens(SequenceId sequence) const { return sequence_at(sequence).tokens; }

double KvBlockManager::fragmentation() const {
  int64_t empty_slots = 0;
  for (size_t block = 0; block < ref_counts_.size(); ++block) {
    if (ref_counts_[block] > 0) empty_slots += block_size_ - filled_[block];
  }
  const int64_t used = used_blocks();
  return used == 0 ? 0.0 : static_cast<double>(empty_slots) / static_cast<double>(used * block_size_);
}

}  // namespace cr
