// What gradient reduction cost a rank in its last step, for benchmarks and the run summary.
#pragma once

#include <cstdint>

namespace cr {

struct GradientTraffic {
  int64_t bytes_sent_per_step = 0;  // per rank, ring estimate
  int64_t buckets = 0;
  int64_t started_during_backward = 0;  // buckets whose reduction overlapped the last backward
};

}  // namespace cr
