#include "core/train/stage_partition.h"

#include <algorithm>

#include "core/base/error.h"

namespace cr {
namespace {

double extra_of(int64_t stage, int64_t stages, double first_extra, double last_extra) {
  return (stage == 0 ? first_extra : 0.0) + (stage == stages - 1 ? last_extra : 0.0);
}

// Blocks per stage with no stage over `limit` (filled from the last stage backwards, every
// earlier stage keeping one block), or empty when that cannot be done.
std::vector<int64_t> fill(int64_t blocks, int64_t stages, double first_extra, double last_extra, double limit) {
  std::vector<int64_t> counts(static_cast<size_t>(stages), 0);
  int64_t left = blocks;
  for (int64_t s = stages - 1; s >= 0; --s) {
    const int64_t later_minimum = s;  // every earlier stage needs one block
    const double room = limit - extra_of(s, stages, first_extra, last_extra);
    const int64_t take = std::min(static_cast<int64_t>(room + 1e-9), left - later_minimum);
    if (take < 1) return {};
    counts[static_cast<size_t>(s)] = take;
    left -= take;
  }
  if (left != 0) return {};
  return counts;
}

}  // namespace

std::vector<int64_t> balanced_stage_blocks(int64_t blocks, int64_t stages, double first_extra, double last_extra) {
  if (stages < 1) fail("a pipeline needs at least one stage, got {}", stages);
  if (blocks < stages) fail("{} transformer blocks cannot fill {} pipeline stages (each stage needs one)", blocks, stages);
  // The smallest limit whose fill succeeds: a stage's cost is an integer plus its extra, so the
  // candidates are few; try them in increasing order.
  std::vector<double> limits;
  for (int64_t s = 0; s < stages; ++s) {
    const double extra = extra_of(s, stages, first_extra, last_extra);
    for (int64_t n = 1; n <= blocks; ++n) limits.push_back(static_cast<double>(n) + extra);
  }
  std::sort(limits.begin(), limits.end());
  limits.erase(std::unique(limits.begin(), limits.end()), limits.end());
  const auto feasible = [&](double limit) { return !fill(blocks, stages, first_extra, last_extra, limit).empty(); };
  const double best = *std::partition_point(limits.begin(), limits.end(), [&](double limit) { return !feasible(limit); });
  // Under that limit, spread the blocks as evenly as the stages' room allows: every stage up to
  // a common level (or its room), the surplus taken off the earliest stages at that level.
  std::vector<int64_t> room(static_cast<size_t>(stages));
  for (int64_t s = 0; s < stages; ++s) {
    room[static_cast<size_t>(s)] = static_cast<int64_t>(best - extra_of(s, stages, first_extra, last_extra) + 1e-9);
  }
  const auto filled_to = [&](int64_t level) {
    int64_t total = 0;
    for (const int64_t r : room) total += std::min(r, level);
    return total;
  };
  int64_t level = 1;
  while (filled_to(level) < blocks) ++level;
  std::vector<int64_t> counts(static_cast<size_t>(stages));
  for (size_t s = 0; s < counts.size(); ++s) counts[s] = std::min(room[s], level);
  int64_t surplus = filled_to(level) - blocks;
  for (size_t s = 0; s < counts.size() && surplus > 0; ++s) {
    if (counts[s] == level && level > 1) {
      --counts[s];
      --surplus;
    }
  }
  return counts;
}

}  // namespace cr
