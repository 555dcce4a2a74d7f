#include "core/train/runtime.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

#include "core/base/error.h"
#include "core/base/log.h"
#include "models/mixed_precision.h"
#include "parallel/mpi_communicator.h"

#ifdef CR_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace cr {

namespace {
int g_ranks_on_this_node = 1;
int g_cuda_device_index = 0;

// precision.dtype's spelling of a compute dtype.
const char* precision_name(torch::ScalarType dtype) {
  if (dtype == torch::kBFloat16) return "bf16";
  if (dtype == torch::kHalf) return "fp16";
  CR_CHECK(dtype == torch::kFloat, "unhandled compute dtype {}", c10::toString(dtype));
  return "fp32";
}
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

GemmRate measure_gemm(torch::ScalarType dtype, torch::Device device) {
  const int64_t n = 2048;
  const torch::ScalarType run_dtype = activation_dtype(dtype, device);
  auto options = torch::TensorOptions().dtype(run_dtype).device(device);
  auto a = torch::randn({n, n}, options.dtype(torch::kFloat)).to(run_dtype);
  auto b = torch::randn({n, n}, options.dtype(torch::kFloat)).to(run_dtype);
  auto c = torch::empty({n, n}, options);
  // GPU kernels run asynchronously: wait for them on the device itself, not through a copy to
  // the host, and time a batch, since one 2048^3 GEMM there takes tens of microseconds.
  const bool cuda = device.is_cuda();
  auto sync = [&] {
    if (cuda) torch::cuda::synchronize(device.index());
  };
  const int batch = cuda ? 20 : 1;
  torch::mm_out(c, a, b);
  sync();
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    for (int j = 0; j < batch; ++j) torch::mm_out(c, a, b);
    sync();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / batch);
  }
  return {2.0 * n * n * n / best, run_dtype};
}


std::optional<PeakFlops> datasheet_peak_flops(const std::string& device_name) {
  // NVIDIA's datasheets: 989 TFLOP/s dense bf16 for the H100 and H200 SXM (1,979 with 2:4
  // sparsity). The PCIe and NVL boards run at lower clocks and power, so they are not matched.
  auto has = [&](const char* part) { return device_name.find(part) != std::string::npos; };
  if (has("PCIe") || has("NVL")) return std::nullopt;
  for (const char* chip : {"H100", "H200"}) {
    if (has(chip)) return PeakFlops{989e12, fmt::format("datasheet {} SXM dense bf16", chip)};
  }
  return std::nullopt;
}

PeakFlops mfu_peak_flops(double configured, torch::ScalarType dtype, torch::Device device) {
  if (configured > 0) return {configured, "train.peak_flops"};
#ifdef CR_TORCH_CUDA
  if (device.is_cuda()) {
    const cudaDeviceProp* properties = device.has_index() ? at::cuda::getDeviceProperties(device.index())
                                                          : at::cuda::getCurrentDeviceProperties();
    if (auto datasheet = datasheet_peak_flops(properties->name)) return *datasheet;
  }
#endif
  const GemmRate gemm = measure_gemm(dtype, device);
  return {gemm.flops, fmt::format("measured 2048^3 {} GEMM", precision_name(gemm.dtype))};
}

std::string describe_exception(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  if (!torch_error) return e.what();
  const std::string message = torch_error->what_without_backtrace();
  // LibTorch's words for the causes users meet, and what to change in the config.
  const std::pair<const char*, const char*> hints[] = {
      {"out of memory",
       "the device ran out of memory: lower train.micro_batch_size, set train.activation_checkpointing, raise "
       "zero.stage or add tensor / pipeline ranks (`plan --device-memory SIZE` predicts the peak)"},
      {"not implemented for 'Half'",
       "this device has no float16 kernel for an operation: use precision.dtype bf16 (or fp32) here"},
      {"not implemented for 'BFloat16'",
       "this device has no bfloat16 kernel for an operation: use precision.dtype fp32 here"},
      {"CUDA error: no kernel image",
       "this LibTorch was built without kernels for this GPU's architecture: use a LibTorch built for it"},
  };
  for (const auto& [cause, hint] : hints) {
    if (message.find(cause) != std::string::npos) return fmt::format("LibTorch: {}\nhint: {}", message, hint);
  }
  return "LibTorch: " + message;
}

void fail_job_if_distributed(const std::exception& e) {
  if (log_world_size() <= 1) return;
  error_line(describe_exception(e));
  abort_job_if_distributed(1);
}

namespace {

// A "Name:  1234 kB" line of /proc/self/status, in bytes; -1 where there is none.
int64_t status_bytes(const std::string& name) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(name + ":", 0) == 0) return std::stoll(line.substr(name.size() + 1)) * 1024;
  }
  return -1;
}

}  // namespace

int64_t peak_rss_bytes() {
  // VmHWM, which reset_peak_rss() can lower; getrusage's maximum never goes down.
  if (const int64_t bytes = status_bytes("VmHWM"); bytes >= 0) return bytes;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

int64_t process_baseline_bytes() {
  static const int64_t bytes = std::max<int64_t>(status_bytes("VmRSS"), 0);
  return bytes;
}

void reset_peak_rss() {
  // Linux: "5" resets the peak resident set size to the current one (proc(5), clear_refs).
  std::ofstream("/proc/self/clear_refs") << "5";
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

int64_t free_memory_bytes(torch::Device device) {
#ifdef CR_TORCH_CUDA
  if (device.is_cuda()) {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) fail("cannot read the free memory of {}", device.str());
    return static_cast<int64_t>(free);
  }
#endif
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  fail("cannot read the available host memory: /proc/meminfo has no MemAvailable");
}

}  // namespace cr
