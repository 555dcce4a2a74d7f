// Bytes in use where computation runs, from which Gemini's auto policy takes non-model memory
// (what is in use beyond the chunks' own buffers, against the start of the step): on an emulated
// device the process's heap (glibc's allocator: every arena and mmap-ed block), on a GPU what
// LibTorch's CUDA allocator has handed out on that device.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace cr {

int64_t memory_in_use(torch::Device device);
// A GPU's whole memory (auto's budget there when runtime.device_memory_limit is not set); 0 on the CPU.
int64_t device_capacity(torch::Device device);

}  // namespace cr
