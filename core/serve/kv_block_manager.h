// The paged KV cache's bookkeeping, as plain data (no tensors): a pool of fixed-size blocks of
// block_size token slots, a block table per sequence, and reference counts, so that sequences
// share blocks: a forked sequence shares all of its parent's, and a new sequence shares every
// full block whose tokens, and all tokens before them, equal a live block's (prefix sharing). A
// sequence that writes into a shared block first gets a copy of its own (copy-on-write). The
// engine moves K/V as the returned slots and copies say.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cr {

using BlockId = int32_t;
using SequenceId = int64_t;

// Where one position's keys and values live: slot `offset` of block `block`.
struct TokenSlot {
  BlockId block = 0;
  int32_t offset = 0;
  bool operator==(const TokenSlot& other) const { return block == other.block && offset == other.offset; }
};

// Copy-on-write: the engine copies block `from`'s slots into block `to` before this iteration writes.
struct BlockCopy {
  BlockId from = 0, to = 0;
  bool operator==(const BlockCopy& other) const { return from == other.from && to == other.to; }
};

// Slots for positions [first_position, first_position + slots.size()) of a sequence.
struct SlotReservation {
  int64_t first_position = 0;
  std::vector<TokenSlot> slots;
  std::vector<BlockCopy> copies;
};

class KvBlockManager {
 public:
  KvBlockManager(int64_t num_blocks, int64_t block_size);

  int64_t num_blocks() const { return static_cast<int64_t>(ref_counts_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return num_blocks() - free_blocks(); }
  static int64_t blocks_for(int64_t tokens, int64_t block_size) { return (tokens + block_size - 1) / block_size; }

  // Starts `sequence` with `tokens` (a prompt, or prompt and generated tokens after a preemption),
  // sharing the live full blocks that hold the same prefix. Returns how many leading positions
  // those blocks already hold (a multiple of block_size, less than tokens.size(): the last
  // token is always computed, for its logits). Takes no free block.
  int64_t add_sequence(SequenceId sequence, std::vector<int64_t> tokens);
  // A copy of `parent` (its tokens and every block, shared) under the new id `child`.
  void fork(SequenceId parent, SequenceId child);
  // Appends tokens the sequence produced (its slots come with reserve()).
  void append_tokens(SequenceId sequence, const std::vector<int64_t>& tokens);
  // Free blocks that reserve(sequence, count) would take.
  int64_t blocks_to_reserve(SequenceId sequence, int64_t count) const;
  // Slots for the sequence's next `count` positions (the engine writes their K/V this iteration),
  // or nothing, and no change, when the pool is short. Those tokens must be known already. A
  // block is shared from the reservation that fills it: within an iteration, the engine writes
  // every sequence's new K/V of a layer before that layer's attention reads any.
  std::optional<SlotReservation> reserve(SequenceId sequence, int64_t count);
  // Returns the sequence's blocks (a block goes back to the pool when no sequence holds it).
  void free(SequenceId sequence);

  bool has_sequence(SequenceId sequence) const { return sequences_.count(sequence) != 0; }
  const std::vector<BlockId>& block_table(SequenceId sequence) const;
  int64_t computed_tokens(SequenceId sequence) const;  // positions with slots
  const std::vector<int64_t>& tokens(SequenceId sequence) const;
  int32_t ref_count(BlockId block) const { return ref_counts_.at(block); }

  // Share of the used blocks' slots that hold no K/V (the last, partly filled block of each
  // sequence): the memory paging wastes.
  double fragmentation() const;

 private:
  struct Sequence {
    std::vector<int64_t> tokens;
    std::vector<BlockId> blocks;
    int64_t computed = 0;
  };
  // A full block is found by its tokens and the block before it, which stands for every token
  // before (the first block's predecessor is -1): an exact match, not a hash.
  using BlockKey = std::pair<BlockId, std::vector<int64_t>>;

  Sequence& sequence_at(SequenceId sequence);
  const Sequence& sequence_at(SequenceId sequence) const;
  BlockId take_block();
  void release(BlockId block);
  BlockKey key_of(const Sequence& sequence, size_t block_index) const;

  int64_t block_size_;
  std::vector<int32_t> ref_counts_;
  std::vector<int32_t> filled_;  // slots of each block holding K/V
  std::vector<BlockId> free_;    // taken from the back
  std::map<BlockKey, BlockId> full_blocks_;
  std::unordered_map<BlockId, BlockKey> key_of_block_;
  std::unordered_map<SequenceId, Sequence> sequences_;
};

}  // namespace cr
