// What one pipeline stage runs, as plain data: its model chunks (one, or V under the interleaved
// schedule), each a contiguous run of blocks, which of them embeds the tokens and which ends in
// the LM head, and the stages each exchanges activations and gradients with. Virtual stage
// k = chunk * stages + stage holds the k-th run of blocks, as Megatron's virtual pipeline does:
// activations go from virtual stage k to k + 1, wrapping from the last stage to the first.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace cr {

struct StageChunk {
  int64_t first_block = 0, last_block = 0;  // blocks [first_block, last_block)
  bool embeds = false;                      // virtual stage 0: starts from the tokens
  bool heads = false;                       // the last virtual stage: ends with the loss
  int previous = -1;  // pipeline stage it receives activations from (and sends gradients to); -1: none
  int next = -1;      // pipeline stage it sends activations to (and receives gradients from); -1: none
  int64_t position = 0;  // its virtual stage
};

// A rank's part of the pipeline.
struct StageLayout {
  std::vector<StageChunk> chunks;  // this rank's, chunk c at index c; one without a pipeline
  int64_t stages = 1;
  int64_t virtual_stages = 1;      // stages x chunks
};

// The chunks of `stage` (in [0, stages)), chunk c at index c, given the blocks of every virtual
// stage (stages x chunks entries, each >= 1). cr::Error for a size that is not a multiple of `stages`.
std::vector<StageChunk> stage_chunks(const std::vector<int64_t>& virtual_blocks, int64_t stages, int64_t stage);

// `stage`'s layout given the blocks of every virtual stage.
StageLayout stage_layout(const std::vector<int64_t>& virtual_blocks, int64_t stages, int64_t stage);

// Message tag for micro-batch `micro_batch` crossing from virtual stage `from` to `from + 1`
// (activations) or back (gradients, `gradient` true): unique among a step's messages up to
// 16380 / virtual stages micro-batches, below 32760 (every MPI allows 32767; the tags above are
// the tied embedding's).
int pipeline_tag(int64_t micro_batch, int64_t from, int64_t virtual_stages, bool gradient);

// Benchmark hook: COLOSSAL_RUN_STAGE_COST_MS="F,B" makes every forward of a stage take F ms more
// and every backward B ms (split evenly over its chunks; zero-bubble's input and weight parts
// half each), so that stages of equal artificial cost show a schedule's bubble. In seconds; none
// when unset; cr::Error when malformed.
struct ArtificialStageCost {
  double forward_s = 0, backward_s = 0;
};
std::optional<ArtificialStageCost> artificial_stage_cost();

}  // namespace cr
