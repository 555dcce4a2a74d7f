// Upper bounds on sizes, far beyond any real model or job, so that a mistyped number (in a
// config, a Hugging Face config.json) is refused where it is read instead of overflowing a
// product, wrapping in a cast to int, or asking the allocator for exabytes.
#pragma once

namespace cr::limits {

constexpr double kMaxLayers = 1 << 12;     // transformer blocks
constexpr double kMaxHeads = 1 << 12;      // attention (and key/value) heads
constexpr double kMaxWidth = 1 << 20;      // d_model; d_ff may be 4x
constexpr double kMaxTokens = 1 << 24;     // vocabulary size, sequence length
constexpr double kMaxSequences = 1 << 24;  // sequences per step or micro-batch
constexpr double kMaxRanks = 1 << 20;      // per mesh axis
constexpr double kMaxThreads = 1 << 12;
constexpr double kMaxBucketMiB = 1 << 16;  // 64 GiB
constexpr double kMaxTimeoutSeconds = 7 * 24 * 3600;

}  // namespace cr::limits
