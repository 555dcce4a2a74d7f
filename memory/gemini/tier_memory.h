// Gemini's memory tiers. The device tier is CUDA memory on a GPU; on a CPU-only machine it is
// emulated: host memory under a byte budget (runtime.device_memory_limit), so that every policy
// runs, moves real bytes and is tested here. Every device-tier buffer is counted from allocation
// until its storage is really freed (autograd may keep a gathered chunk alive until backward),
// so the peak is what the device held. The host tier is pinned where a GPU exists and 4 KiB
// aligned everywhere (the NVMe tier's direct I/O reads into and writes from host buffers). The
// NVMe tier itself is files (nvme_store.h); no tensor lives there.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

namespace cr {

enum class Tier : uint8_t { Device, Host, Nvme };
const char* tier_name(Tier tier);  // "device", "host", "nvme"

class TierMemory {
 public:
  // `device`: the device computation runs on (CPU: the device tier is emulated). device_budget:
  // bytes the device tier may hold, 0 for no limit.
  TierMemory(torch::Device device, int64_t device_budget);

  // A new uninitialised buffer on `tier` (device or host); cr::Error naming the budget, the bytes
  // in use and `what` when the device tier cannot take it.
  torch::Tensor empty(Tier tier, int64_t numel, torch::ScalarType dtype, const std::string& what);
  torch::Tensor zeros(Tier tier, int64_t numel, torch::ScalarType dtype, const std::string& what);

  torch::Device device() const { return device_; }
  torch::Device device_of(Tier tier) const { return tier == Tier::Device ? device_ : torch::Device(torch::kCPU); }
  bool emulated() const { return device_.is_cpu(); }
  int64_t budget() const { return budget_; }  // 0: none
  int64_t device_bytes() const { return counters_->device; }
  int64_t device_peak() const { return counters_->device_peak; }
  int64_t host_bytes() const { return counters_->host; }
  int64_t host_peak() const { return counters_->host_peak; }
  void reset_peaks();

 private:
  struct Counters {
    std::atomic<int64_t> device{0}, device_peak{0}, host{0}, host_peak{0};
  };
  torch::Device device_;
  int64_t budget_;
  std::shared_ptr<Counters> counters_;  // outlives this object while buffers do
};

}  // namespace cr
