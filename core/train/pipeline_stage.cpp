#include "core/train/pipeline_stage.h"

#include <cstdio>
#include <cstdlib>

#include "core/base/error.h"

namespace cr {

std::vector<StageChunk> stage_chunks(const std::vector<int64_t>& virtual_blocks, int64_t stages, int64_t stage) {
  const auto count = static_cast<int64_t>(virtual_blocks.size());
  if (stages < 1 || stage < 0 || stage >= stages || count % stages != 0 || count == 0) {
    fail("pipeline stage {} of {} cannot hold {} virtual stages", stage, stages, count);
  }
  std::vector<int64_t> first(static_cast<size_t>(count) + 1, 0);
  for (int64_t k = 0; k < count; ++k) {
    if (virtual_blocks[static_cast<size_t>(k)] < 1) fail("virtual pipeline stage {} has no block", k);
    first[static_cast<size_t>(k) + 1] = first[static_cast<size_t>(k)] + virtual_blocks[static_cast<size_t>(k)];
  }
  std::vector<StageChunk> chunks;
  for (int64_t k = stage; k < count; k += stages) {
    StageChunk chunk;
    chunk.position = k;
    chunk.first_block = first[static_cast<size_t>(k)];
    chunk.last_block = first[static_cast<size_t>(k) + 1];
    chunk.embeds = k == 0;
    chunk.heads = k == count - 1;
    if (!chunk.embeds) chunk.previous = static_cast<int>((k - 1) % stages);
    if (!chunk.heads) chunk.next = static_cast<int>((k + 1) % stages);
    chunks.push_back(chunk);
  }
  return chunks;
}

StageLayout stage_layout(const std::vector<int64_t>& virtual_blocks, int64_t stages, int64_t stage) {
  StageLayout layout;
  layout.chunks = stage_chunks(virtual_blocks, stages, stage);
  layout.stages = stages;
  layout.virtual_stages = static_cast<int64_t>(virtual_blocks.size());
  return layout;
}

int pipeline_tag(int64_t micro_batch, int64_t from, int64_t virtual_stages, bool gradient) {
  return static_cast<int>(((micro_batch * virtual_stages + from) * 2 + (gradient ? 1 : 0)) % 32760);
}

std::optional<ArtificialStageCost> artificial_stage_cost() {
  const char* text = std::getenv("COLOSSAL_RUN_STAGE_COST_MS");
  if (!text) return std::nullopt;
  double forward_ms = 0, backward_ms = 0;
  char rest = 0;
  if (std::sscanf(text, "%lf,%lf%c", &forward_ms, &backward_ms, &rest) != 2 || !(forward_ms >= 0) ||
      !(backward_ms >= 0)) {
    fail("COLOSSAL_RUN_STAGE_COST_MS='{}': expected F,B (milliseconds per forward and per backward)", text);
  }
  return ArtificialStageCost{forward_ms / 1e3, backward_ms / 1e3};
}

}  // namespace cr
