// Benchmark of the initialisation (models/parameter_init.h): nanoseconds per element of
// initial_values against torch's normal_ (the global generator, which cannot produce a shard
// alone), with one thread and with every core.
// Usage: bench_init [elements]   (default 100M); one JSON line per thread count.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "best_seconds.h"
#include "models/parameter_init.h"

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 100'000'000;
  std::vector<float> values(static_cast<size_t>(n));
  auto tensor = torch::empty({n});
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  for (const int threads : {1, std::max(1, cores)}) {
    at::set_num_threads(threads);
    const double ours = best_seconds(3, [&] {
      cr::initial_values(cr::normal_init(0.02), 1, "h.0.mlp.c_fc.weight", 0, n, values.data());
    });
    const double torch_normal = best_seconds(3, [&] { tensor.normal_(0.0, 0.02); });
    std::printf("{\"benchmark\":\"initial_values\",\"elements\":%lld,\"threads\":%d,\"ns_per_element\":%.3f,"
                "\"torch_normal_ns_per_element\":%.3f,\"ratio_to_torch\":%.3f}\n",
                static_cast<long long>(n), threads, ours / n * 1e9, torch_normal / n * 1e9, ours / torch_normal);
    if (cores <= 1) break;
  }
  return 0;
}
