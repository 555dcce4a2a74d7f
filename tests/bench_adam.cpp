// Benchmark of the fused CPU Adam step (kernels/adamw.h) on fp32 parameters: its time against
// torch::optim::AdamW with the same hyper-parameters, and its memory bandwidth against the
// machine's copy and in-place read-write bandwidths, all with every core.
// Usage: bench_adam [element counts...]   (default 1M 10M 100M); one JSON line per size.
#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "best_seconds.h"
#include "kernels/adamw.h"

namespace {

constexpr double kLr = 1e-3, kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8, kWeightDecay = 0.01;
// Per fp32 element: parameter read and written, gradient read, both moments read and written.
constexpr double kBytesPerElement = 28.0;


// Memory bandwidths (bytes read + written per second) with every thread streaming its own
// contiguous slice of buffers far larger than the caches, as the Adam step streams its own tile.
struct Bandwidths {
  double copy;      // memcpy from one buffer to another
  double in_place;  // read and write back the same buffer: the Adam step's access pattern
};

Bandwidths measure_bandwidths(int64_t bytes) {
  std::vector<float> source(bytes / 4, 1.0f), destination(bytes / 4, 0.0f);
  const auto n = static_cast<int64_t>(source.size());
  const double copy_seconds = best_seconds(10, [&] {
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
      const int64_t begin = n * thread / threads, end = n * (thread + 1) / threads;
      std::memcpy(destination.data() + begin, source.data() + begin, (end - begin) * sizeof(float));
    }
  });
  float* data = source.data();
  const double in_place_seconds = best_seconds(10, [&] {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) data[i] = -data[i];
  });
  const double moved = 2.0 * static_cast<double>(n) * sizeof(float);
  return {moved / copy_seconds, moved / in_place_seconds};
}

cr::AdamStepParams fused_params(int64_t step) {
  cr::AdamStepParams p;
  p.lr = static_cast<float>(kLr);
  p.beta1 = static_cast<float>(kBeta1);
  p.beta2 = static_cast<float>(kBeta2);
  p.eps = static_cast<float>(kEps);
  p.weight_decay = static_cast<float>(kWeightDecay);
  p.decoupled_weight_decay = true;
  p.step = step;
  return p;
}

void bench(int64_t n, const Bandwidths& bandwidths) {
  const int runs = n >= 100'000'000 ? 5 : n >= 10'000'000 ? 10 : 30;
  torch::manual_seed(0);
  const torch::Tensor initial = torch::randn({n});
  const torch::Tensor grad = torch::randn({n}) * 1e-2;

  // torch::optim::AdamW; its first step allocates the moments, so it is a warm-up.
  double torch_seconds = 0;
  torch::Tensor torch_after_first_step;
  {
    torch::Tensor param = initial.clone().set_requires_grad(true);
    param.mutable_grad() = grad.clone();
    torch::optim::AdamW optimizer({param}, torch::optim::AdamWOptions(kLr)
                                               .betas({kBeta1, kBeta2})
                                               .eps(kEps)
                                               .weight_decay(kWeightDecay));
    optimizer.step();
    torch_after_first_step = param.detach().clone();
    torch_seconds = best_seconds(runs, [&] { optimizer.step(); });
  }

  torch::Tensor param = initial.clone();
  torch::Tensor exp_avg = torch::zeros({n}), exp_avg_sq = torch::zeros({n});
  int64_t step = 0;
  auto fused_step = [&] {
    cr::adam_step(param.data_ptr<float>(), grad.data_ptr<float>(), exp_avg.data_ptr<float>(),
                  exp_avg_sq.data_ptr<float>(), n, fused_params(++step));
  };
  fused_step();
  const double max_abs_diff = (param - torch_after_first_step).abs().max().item<double>();
  const double fused_seconds = best_seconds(runs, fused_step);

  const double fused_bytes_per_second = kBytesPerElement * static_cast<double>(n) / fused_seconds;
  std::printf(
      "{\"n\": %lld, \"isa\": \"%s\", \"threads\": %d, \"fused_ms\": %.3f, "
      "\"torch_adamw_ms\": %.3f, \"speedup\": %.2f, \"fused_gb_per_s\": %.2f, "
      "\"copy_gb_per_s\": %.2f, \"fraction_of_copy_bandwidth\": %.3f, \"in_place_rw_gb_per_s\": %.2f, "
      "\"fraction_of_in_place_rw_bandwidth\": %.3f, \"max_abs_diff_vs_torch_first_step\": %.3g}\n",
      static_cast<long long>(n), cr::adam_isa_name(), omp_get_max_threads(), fused_seconds * 1e3,
      torch_seconds * 1e3, torch_seconds / fused_seconds, fused_bytes_per_second / 1e9,
      bandwidths.copy / 1e9, fused_bytes_per_second / bandwidths.copy, bandwidths.in_place / 1e9,
      fused_bytes_per_second / bandwidths.in_place, max_abs_diff);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = omp_get_num_procs();
  omp_set_num_threads(threads);
  at::set_num_threads(threads);
  std::vector<int64_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoll(argv[i]));
  if (sizes.empty()) sizes = {1'000'000, 10'000'000, 100'000'000};
  const Bandwidths bandwidths = measure_bandwidths(int64_t{1} << 30);
  for (int64_t n : sizes) bench(n, bandwidths);
  return 0;
}
