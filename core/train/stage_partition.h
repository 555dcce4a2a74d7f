// Which transformer blocks each pipeline stage holds: contiguous runs of blocks, balanced by
// compute, with the token embedding counted on the first stage and the LM head (and its loss)
// on the last, as Megatron places them. Plain data, tested without a model.
#pragma once

#include <cstdint>
#include <vector>

namespace cr {

// Blocks per stage (sums to `blocks`, each >= 1) minimising the most expensive stage, where a
// block costs 1 and the first and last stages carry `first_extra` and `last_extra` more (in
// blocks). Ties keep earlier stages no larger than later ones. cr::Error when blocks < stages.
std::vector<int64_t> balanced_stage_blocks(int64_t blocks, int64_t stages, double first_extra, double last_extra);

}  // namespace cr
