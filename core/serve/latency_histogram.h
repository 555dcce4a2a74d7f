// Latencies (time to first token, between tokens) as a Prometheus histogram.
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

namespace cr {

class LatencyHistogram {
 public:
  void observe(double seconds);
  std::string prometheus(const std::string& name, const std::string& help) const;

 private:
  static constexpr double kBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(std::size(kBounds) + 1, 0);
  double sum_ = 0;
  uint64_t total_ = 0;
};

}  // namespace cr
