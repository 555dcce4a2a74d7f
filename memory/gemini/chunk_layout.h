// memory/gemini/: Gemini, chunk-based heterogeneous memory (docs/gemini.md). Parameters live in
// chunks, each a contiguous range of the flat layout (flat_parameters.h) padded to one chunk
// size; a chunk is sharded over the data ranks, gathered to the device to compute, and its parts
// placed on the device or the host by a placement policy.
//
// This file: cutting the flat layout into chunks, with the chunk size searched as Colossal-AI does
// (the size with the least padding in a range above the largest parameter, divisible by the
// data-parallel size) or given.
#pragma once

#include <cstdint>
#include <vector>

#include "memory/flat_parameters.h"

namespace cr {

constexpr int64_t kChunkUnit = int64_t{1} << 20;  // the "m" of chunk_size_m and friends, as Colossal-AI

struct ChunkSearchOptions {
  int64_t chunk_size = 0;              // elements; 0: searched
  int64_t search_range = 32 * kChunkUnit;
  int64_t min_chunk_size = 32 * kChunkUnit;
  int64_t search_interval = 1024;
  bool filter_large = true;  // parameters beyond mean + 3 sd take chunks of their own, outside the search
};

struct ChunkLayout {
  int64_t chunk_size = 0;        // each chunk's capacity in elements
  std::vector<BucketRange> chunks;  // tile the flat layout in order
  bool keep_gathered = false;    // the model is smaller than min_chunk_size: one chunk, never released
  int64_t padding = 0;           // elements of capacity no parameter uses, over all chunks
  int64_t capacity(size_t chunk) const { return std::max(chunk_size, chunks[chunk].numel()); }
};

// Elements left unused when parameters of `sizes` are packed in order into chunks of
// `chunk_size` (a parameter that does not fit opens the next chunk).
int64_t unused_elements(const std::vector<int64_t>& sizes, int64_t chunk_size);

// The chunks of `entries` (flat order) for `dp_size` data ranks. A parameter never spans two
// chunks; one larger than the chunk size gets a chunk of its own size.
ChunkLayout make_chunk_layout(const std::vector<FlatEntry>& entries, int dp_size, const ChunkSearchOptions& options);

// Which chunks each part of the model uses, in chunk order: the outer parameters (layer -1:
// embeddings, final norm, head) and each of `blocks` transformer blocks.
struct ChunkUsers {
  std::vector<size_t> outer;
  std::vector<std::vector<size_t>> blocks;
};
ChunkUsers chunk_users(const std::vector<FlatEntry>& entries, const ChunkLayout& layout, int64_t blocks);

}  // namespace cr
