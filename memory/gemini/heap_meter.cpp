#include "memory/gemini/heap_meter.h"

#include <malloc.h>

#ifdef CR_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include "core/base/error.h"
#endif

namespace cr {

int64_t memory_in_use(torch::Device device) {
#ifdef CR_TORCH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[0].current;  // index 0: StatType::AGGREGATE
  }
#endif
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

int64_t device_capacity(torch::Device device) {
#ifdef CR_TORCH_CUDA
  if (device.is_cuda()) {
    cudaDeviceProp properties{};
    const int index = device.index() < 0 ? 0 : device.index();
    if (cudaGetDeviceProperties(&properties, index) != cudaSuccess) fail("cannot read the memory size of {}", device.str());
    return static_cast<int64_t>(properties.totalGlobalMem);
  }
#endif
  (void)device;
  return 0;
}

}  // namespace cr
