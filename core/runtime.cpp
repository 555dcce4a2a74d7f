#include "core/runtime.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/log.h"
#include "parallel/mpi_communicator.h"

#ifdef CR_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace cr {

namespace {
int g_ranks_on_this_node = 1;
int g_cuda_device_index = 0;
}  // namespace

void set_cuda_device_index(int index) { g_cuda_device_index = index; }

void set_ranks_on_this_node(int ranks) { g_ranks_on_this_node = std::max(1, ranks); }
int ranks_on_this_node() { return g_ranks_on_this_node; }

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

int configure_threads(const RuntimeConfig& runtime, int ranks_on_node) {
  // A launcher that binds ranks to cores already gave this process its share (its affinity
  // mask is smaller than the machine); otherwise the ranks on this node split the cores.
  const int cores = available_cores();
  const bool bound = cores < static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int threads = runtime.threads > 0 ? static_cast<int>(runtime.threads)
                                          : std::max(1, bound ? cores : cores / std::max(1, ranks_on_node));
  at::set_num_threads(threads);
  return threads;
}

torch::Device resolve_device(const RuntimeConfig& runtime) {
  if (runtime.device == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (runtime.device == "cuda" && !cuda) {
    fail("runtime.device: cuda requested but no CUDA device is available to this build");
  }
  return cuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(g_cuda_device_index))
              : torch::Device(torch::kCPU);
}

torch::ScalarType compute_dtype(const PrecisionConfig& precision) {
  if (precision.dtype == "bf16") return torch::kBFloat16;
  if (precision.dtype == "fp16") return torch::kHalf;
  CR_CHECK(precision.dtype == "fp32", "unhandled precision.dtype '{}'", precision.dtype);
  return torch::kFloat;
}

double measure_gemm_flops(torch::ScalarType dtype, torch::Device device) {
  const int64_t n = 2048;
  auto options = torch::TensorOptions().dtype(dtype).device(device);
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device)).to(dtype);
  auto b = torch::randn({n, n}, options.dtype(torch::kFloat)).to(dtype);
  auto c = torch::empty({n, n}, options);
  auto sync = [&] {
    if (device.is_cuda()) c.cpu();
  };
  torch::mm_out(c, a, b);
  sync();
  double best = 1e30;
  const int reps = device.is_cuda() ? 20 : 3;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    sync();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * n * n * n / best;
}

std::string describe_exception(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e)) {
    return std::string("LibTorch: ") + torch_error->what_without_backtrace();
  }
  return e.what();
}

void fail_job_if_distributed(const std::exception& e) {
  if (log_world_size() <= 1) return;
  error_line(describe_exception(e));
  abort_job_if_distributed(1);
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

int64_t peak_device_bytes(torch::Device device) {
#ifdef CR_TORCH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE, in every LibTorch version
  }
#endif
  return 0;
}

}  // namespace cr
