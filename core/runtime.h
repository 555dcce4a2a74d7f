// Process-level runtime set-up: threads, device, and the machine facts metrics need.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "core/config.h"

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

// Measured dense GEMM rate (FLOP/s) of a 2048^3 matmul in `dtype` on `device`: the MFU peak
// on CPUs, where no datasheet number describes the machine.
double measure_gemm_flops(torch::ScalarType dtype, torch::Device device);

// The message of an exception for the user: LibTorch errors without their C++ backtrace.
std::string describe_exception(const std::exception& e);

// Prints the error and ends every rank of a multi-rank job at once: the other ranks would
// otherwise wait in their next collective until it timed out. Returns only for one process.
void fail_job_if_distributed(const std::exception& e);

// Peak resident set size of this process in bytes.
int64_t peak_rss_bytes();

// Peak bytes allocated on `device` by LibTorch's allocator; 0 for the CPU.
int64_t peak_device_bytes(torch::Device device);

}  // namespace cr
