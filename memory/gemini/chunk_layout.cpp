#include "memory/gemini/chunk_layout.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/base/error.h"

namespace cr {

int64_t unused_elements(const std::vector<int64_t>& sizes, int64_t chunk_size) {
  int64_t left = 0, unused = 0;
  for (int64_t size : sizes) {
    if (size > left) {
      unused += left;
      left = std::max(chunk_size, size);
    }
    left -= size;
  }
  return unused + left;
}

namespace {

// Sizes the search ignores: beyond mean + 3 standard deviations (Colossal-AI's filter), so that one
// huge embedding does not force every chunk to its size.
std::vector<int64_t> searched_sizes(const std::vector<int64_t>& sizes, bool filter_large) {
  if (!filter_large || sizes.size() < 2) return sizes;
  const double mean = std::accumulate(sizes.begin(), sizes.end(), 0.0) / static_cast<double>(sizes.size());
  double variance = 0;
  for (int64_t size : sizes) variance += (static_cast<double>(size) - mean) * (static_cast<double>(size) - mean);
  const double limit = mean + 3 * std::sqrt(variance / static_cast<double>(sizes.size()));
  std::vector<int64_t> kept;
  for (int64_t size : sizes) {
    if (static_cast<double>(size) <= limit) kept.push_back(size);
  }
  return kept;
}

}  // namespace

ChunkLayout make_chunk_layout(const std::vector<FlatEntry>& entries, int dp_size, const ChunkSearchOptions& options) {
  CR_CHECK(dp_size >= 1 && !entries.empty(), "chunk layout: {} entries over {} ranks", entries.size(), dp_size);
  std::vector<int64_t> sizes;
  for (const auto& entry : entries) sizes.push_back(entry.numel);
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  ChunkLayout layout;
  if (options.chunk_size > 0) {
    layout.chunk_size = options.chunk_size;
  } else if (total < options.min_chunk_size) {
    layout.chunk_size = total;
    layout.keep_gathered = true;
  } else {
    const std::vector<int64_t> searched = searched_sizes(sizes, options.filter_large);
    int64_t largest = options.min_chunk_size;
    for (int64_t size : searched) largest = std::max(largest, size);
    const int64_t interval = options.search_interval;
    const int64_t start = (largest + interval - 1) / interval * interval;
    int64_t best = start, least = -1;
    for (int64_t size = start; size <= start + options.search_range; size += interval) {
      const int64_t unused = unused_elements(searched, size);
      if (least < 0 || unused < least) {
        least = unused;
        best = size;
      }
    }
    layout.chunk_size = best;
  }
  layout.chunk_size += (dp_size - layout.chunk_size % dp_size) % dp_size;
  int64_t begin = 0, end = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (end > begin && end - begin + entries[i].numel > layout.chunk_size) {
      layout.chunks.push_back({begin, end});
      begin = end;
    }
    end += entries[i].numel;
  }
  layout.chunks.push_back({begin, end});
  for (size_t c = 0; c < layout.chunks.size(); ++c) layout.padding += layout.capacity(c) - layout.chunks[c].numel();
  return layout;
}

ChunkUsers chunk_users(const std::vector<FlatEntry>& entries, const ChunkLayout& layout, int64_t blocks) {
  ChunkUsers users;
  users.blocks.resize(static_cast<size_t>(blocks));
  size_t chunk = 0;
  for (const FlatEntry& entry : entries) {
    while (layout.chunks[chunk].end <= entry.offset) ++chunk;
    CR_CHECK(entry.layer < blocks, "parameter {} of layer {} in a {}-layer model", entry.name, entry.layer, blocks);
    auto& list = entry.layer < 0 ? users.outer : users.blocks[static_cast<size_t>(entry.layer)];
    if (std::find(list.begin(), list.end(), chunk) == list.end()) list.push_back(chunk);
  }
  return users;
}

}  // namespace cr
