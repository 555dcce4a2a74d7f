// Bytes of training state one rank holds, by kind: what `plan` predicts and the trainer reports.
#pragma once

#include <algorithm>
#include <cstdint>

namespace cr {

struct StateBytes {
  int64_t parameters = 0;        // compute weights (+ stage 3's gathered layers at their peak)
  int64_t master_weights = 0;    // fp32 copy when it is not the compute weights
  int64_t gradients = 0;         // fp32 gradients (+ stages 2-3's reduction staging at its peak)
  int64_t optimizer_states = 0;  // Adam moments, fp32
  int64_t total() const { return parameters + master_weights + gradients + optimizer_states; }
};

// Time spent copying between the device and host tiers, and the part of it the copies' caller
// stood waiting (the rest ran behind compute).
struct TransferTimes {
  double seconds = 0.0;
  double exposed = 0.0;
  double hidden_share() const { return seconds > 0.0 ? std::clamp(1.0 - exposed / seconds, 0.0, 1.0) : 0.0; }
};

// Where a tiered strategy (Gemini) keeps its bytes, and what its last training step moved.
struct TierUsage {
  bool tiered = false;               // false: everything on the compute device (ZeRO)
  int64_t device_budget = 0;         // 0: none
  int64_t device_peak = 0, host_peak = 0;  // training-state bytes, allocator peaks since the last report
  int64_t host_to_device = 0, device_to_host = 0;  // bytes moved in the last training step
  int64_t nvme_bytes = 0;                    // the NVMe tier's file
  int64_t nvme_read = 0, nvme_written = 0;   // in the last training step
  int64_t prefetched = 0;                    // chunks gathered ahead of use in the last training step
  TransferTimes copies;                      // device / host copies in the last training step
};

}  // namespace cr
