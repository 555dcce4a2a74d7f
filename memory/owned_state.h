// A rank's training state in a checkpoint, for any strategy that lays its parameters out flat
// and splits them over the data ranks with a ShardLayout (ZeRO's buckets, Gemini's chunks): fp32
// weights under the parameters' names and Adam's moments as exp_avg.<name> / exp_avg_sq.<name>,
// in "owned space" (the rank's shard, or the whole buffer when it owns all of it).
#pragma once

#include <vector>

#include "memory/parameter_strategy.h"
#include "memory/flat_parameters.h"

namespace cr {

// This rank's slices of its owned-space fp32 `state` (weights, exp_avg, exp_avg_sq): its
// reduce-scatter share of every bucket of `reduced`, so that replicas split the writing and each
// element is written once; copies held by several tensor ranks are written by the primary one.
CheckpointPart owned_state_part(const std::vector<FlatEntry>& entries, const ShardLayout& reduced,
                                const ShardLayout& owned, std::vector<torch::Tensor> state);

// The owned-space fp32 weights, exp_avg and exp_avg_sq read from any layout's checkpoint; a
// checkpoint of another model fails naming the first tensor that does not fit.
std::vector<torch::Tensor> read_owned_state(SliceReader& reader, const std::vector<FlatEntry>& entries,
                                            const ShardLayout& owned);

}  // namespace cr
