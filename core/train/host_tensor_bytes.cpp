#include "core/train/host_tensor_bytes.h"

namespace cr {

void HostTensorBytes::reportMemoryUsage(void*, int64_t alloc_size, int64_t, int64_t, c10::Device device) {
  if (!device.is_cpu()) return;
  const int64_t now = current_ += alloc_size;
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

HostTensorBytes* HostTensorBytes::active() {
  return dynamic_cast<HostTensorBytes*>(c10::ThreadLocalDebugInfo::get(c10::DebugInfoKind::PROFILER_STATE));
}

HostTensorBytes::Scope::Scope()
    : bytes_(std::make_shared<HostTensorBytes>()), guard_(c10::DebugInfoKind::PROFILER_STATE, bytes_) {}

}  // namespace cr
