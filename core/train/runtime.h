// Process-level runtime set-up: threads, device, and the machine facts metrics need.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "core/config/config.h"

namespace cr {

// Cores this process may run on (its CPU affinity mask), at least 1.
int available_cores();

// How many ranks of the job run on this machine and so share its cores; the launcher sets it.
void set_ranks_on_this_node(int ranks);
int ranks_on_this_node();

// Sets LibTorch's (and so OpenMP's / OpenBLAS's) intra-op threads: runtime.threads, or this
// process's share of the cores. Returns the count used.
int configure_threads(const RuntimeConfig& runtime, int ranks_on_node = 1);

// runtime.device resolved: cuda when asked for (error if unavailable) or when auto finds one;
// then the GPU set by set_cuda_device_index (the rank's local index), by default 0.
torch::Device resolve_device(const RuntimeConfig& runtime);
void set_cuda_device_index(int index);

torch::ScalarType compute_dtype(const PrecisionConfig& precision);

// A dense GEMM rate measured on a 2048^3 matmul, and the dtype that matmul ran in: the dtype
// the model's matmuls run in for parameters of the asked dtype (fp16 parameters on a CPU
// without fp16 kernels compute in fp32, see models/mixed_precision.h).
struct GemmRate {
  double flops = 0;  // FLOP/s, best of a few runs
  torch::ScalarType dtype = torch::kFloat;
};
GemmRate measure_gemm(torch::ScalarType dtype, torch::Device device);

// The MFU denominator and where it came from, for the logs and the benchmark JSON.
struct PeakFlops {
  double flops = 0;
  std::string source;  // "train.peak_flops", "datasheet H100 SXM dense bf16", "measured 2048^3 fp32 GEMM"
};

// The datasheet dense bf16 peak of a GPU known by its CUDA device name; nullopt for the others.
std::optional<PeakFlops> datasheet_peak_flops(const std::string& device_name);

// The MFU peak: `configured` (train.peak_flops) when positive; else on a GPU its datasheet
// dense bf16 peak where known; else a GEMM measured now on `device` (measure_gemm), since no
// datasheet number describes a CPU.
PeakFlops mfu_peak_flops(double configured, torch::ScalarType dtype, torch::Device device);

// The message of an exception for the user: LibTorch errors without their C++ backtrace, and
// with a hint where the cause is a known one (memory, a dtype the device lacks).
std::string describe_exception(const std::exception& e);

// Prints the error and ends every rank of a multi-rank job at once: the other ranks would
// otherwise wait in their next collective until it timed out. Returns only for one process.
void fail_job_if_distributed(const std::exception& e);

// Peak resident set size of this process in bytes, since start or the last reset_peak_rss().
int64_t peak_rss_bytes();
// This process's resident memory before any model or data exists (libraries, runtimes): the
// resident set size at the first call, which main() makes first thing.
int64_t process_baseline_bytes();
// Starts a new peak from the current resident set size (where Linux allows it), so that the
// training steps' peak is measured apart from start-up's.
void reset_peak_rss();

// Peak bytes allocated on `device` by LibTorch's allocator; 0 for the CPU.
int64_t peak_device_bytes(torch::Device device);

// Memory free for new tensors on `device`: the GPU's free memory (cudaMemGetInfo), or on the host
// what Linux counts as available (MemAvailable). cr::Error when neither can be read.
int64_t free_memory_bytes(torch::Device device);

}  // namespace cr
