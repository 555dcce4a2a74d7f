// The benchmarks' timer: the fastest of `runs` runs, in seconds (the least disturbed one).
#pragma once

#include <algorithm>
#include <chrono>

template <class F>
double best_seconds(int runs, F&& run) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}
