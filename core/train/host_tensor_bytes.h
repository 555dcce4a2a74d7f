// Exact bytes of LibTorch's CPU tensors, for benchmarks: the CPU allocator reports every
// allocation and free to the memory-reporting object of the calling thread's debug info, as it
// does for the profiler. While a HostTensorBytes is installed (HostTensorBytes::Scope), its
// current and peak counts are those bytes, unlike the resident set size that also holds the
// allocator's cached free memory. Install it before any tensor of the run exists: frees of
// older tensors are unknown to it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

namespace cr {

class HostTensorBytes final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void* ptr, int64_t alloc_size, int64_t total_allocated, int64_t total_reserved,
                         c10::Device device) override;
  bool memoryProfilingEnabled() const override { return true; }

  int64_t current() const { return current_; }
  int64_t peak() const { return peak_; }
  void reset_peak() { peak_ = current_.load(); }

  // The one installed on this thread, if any.
  static HostTensorBytes* active();

  // Installs a fresh one on this thread while alive.
  class Scope {
   public:
    Scope();
    HostTensorBytes& bytes() { return *bytes_; }

   private:
    std::shared_ptr<HostTensorBytes> bytes_;
    c10::DebugInfoGuard guard_;
  };

 private:
  std::atomic<int64_t> current_{0}, peak_{0};
};

}  // namespace cr
