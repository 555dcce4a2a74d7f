#include "memory/gemini/tier_memory.h"

#include <cstdlib>

#include "core/base/error.h"
#include "core/base/strings.h"

namespace cr {

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::Device: return "device";
    case Tier::Host: return "host";
    case Tier::Nvme: return "nvme";
  }
  return "?";
}

TierMemory::TierMemory(torch::Device device, int64_t device_budget)
    : device_(device), budget_(device_budget), counters_(std::make_shared<Counters>()) {}

namespace {

void raise_peak(std::atomic<int64_t>& peak, int64_t value) {
  int64_t seen = peak.load();
  while (value > seen && !peak.compare_exchange_weak(seen, value)) {
  }
}

}  // namespace

torch::Tensor TierMemory::empty(Tier tier, int64_t numel, torch::ScalarType dtype, const std::string& what) {
  CR_CHECK(tier != Tier::Nvme, "{}: no tensor lives on the NVMe tier", what);
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
  auto& used = tier == Tier::Device ? counters_->device : counters_->host;
  auto& peak = tier == Tier::Device ? counters_->device_peak : counters_->host_peak;
  if (tier == Tier::Device && budget_ > 0 && used.load() + bytes > budget_) {
    fail("device memory budget {} cannot take {} for {}: {} already in use by Gemini's chunks", human_bytes(budget_),
         human_bytes(bytes), what, human_bytes(used.load()));
  }
  auto options = torch::TensorOptions().dtype(dtype).device(device_of(tier));
  used += bytes;
  raise_peak(peak, used.load());
  auto counters = counters_;
  const bool device = tier == Tier::Device;
  if (tier == Tier::Host && device_.is_cpu()) {
    void* memory = nullptr;
    if (posix_memalign(&memory, 4096, static_cast<size_t>(std::max<int64_t>(bytes, 1))) != 0) {
      counters->host -= bytes;
      fail("host memory: cannot allocate {} for {}", human_bytes(bytes), what);
    }
    return torch::from_blob(
        memory, {numel},
        [counters, bytes](void* data) {
          counters->host -= bytes;
          std::free(data);
        },
        options);
  }
  if (tier == Tier::Host) options = options.pinned_memory(true);
  torch::Tensor buffer = torch::empty({numel}, options);
  // The counted tensor shares the buffer's memory; its deleter runs when the last view of it
  // dies, and the captured buffer goes with the deleter.
  return torch::from_blob(
      buffer.data_ptr(), {numel},
      [buffer, counters, device, bytes](void*) { (device ? counters->device : counters->host) -= bytes; },
      buffer.options());
}

torch::Tensor TierMemory::zeros(Tier tier, int64_t numel, torch::ScalarType dtype, const std::string& what) {
  return empty(tier, numel, dtype, what).zero_();
}

void TierMemory::reset_peaks() {
  counters_->device_peak = counters_->device.load();
  counters_->host_peak = counters_->host.load();
}

}  // namespace cr
