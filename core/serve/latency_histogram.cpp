#include "core/serve/latency_histogram.h"

#include <fmt/format.h>

namespace cr {

void LatencyHistogram::observe(double seconds) {
  size_t bucket = 0;
  while (bucket < std::size(kBounds) && seconds > kBounds[bucket]) ++bucket;
  ++counts_[bucket];
  sum_ += seconds;
  ++total_;
}

std::string LatencyHistogram::prometheus(const std::string& name, const std::string& help) const {
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t bucket = 0; bucket < std::size(kBounds); ++bucket) {
    cumulative += counts_[bucket];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[bucket], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, total_, name, sum_, name, total_);
  return out;
}

}  // namespace cr
