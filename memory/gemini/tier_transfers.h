// Copies between the device tier and the host tier, timed. A copy started ahead of its use (a
// prefetched chunk's weights, a reduced gradient on its way to the host) runs on a worker thread
// while the caller computes; a copy the
// caller needs at once runs on the caller. `seconds` is the time spent copying, `exposed` the
// part of it the caller stood waiting (synchronous copies count whole), so
// 1 - exposed / seconds is the share of transfer time hidden behind compute. On a GPU the worker
// issues the copy from pinned memory and waits for it, so the caller's thread is free meanwhile.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <torch/torch.h>

#include "memory/state_bytes.h"

namespace cr {

class TierTransfers {
 public:
  using Ticket = uint64_t;  // 0: nothing to wait for

  TierTransfers();
  ~TierTransfers();
  TierTransfers(const TierTransfers&) = delete;
  TierTransfers& operator=(const TierTransfers&) = delete;

  // Queues dst.copy_(src) on the worker; both stay untouched by the caller until wait().
  Ticket start(torch::Tensor dst, torch::Tensor src);
  // Queues into += src, src copied to the host first (the copy is the transfer, and what is
  // timed); `into` (on the host) stays untouched by the caller until wait().
  Ticket start_accumulate(torch::Tensor into, torch::Tensor src);
  // Returns once the copy of `ticket` (and every one queued before it) is done; rethrows its error.
  void wait(Ticket ticket);
  void wait_all();
  // dst.copy_(src) now, on the caller.
  void copy(const torch::Tensor& dst, const torch::Tensor& src);
  // A new tensor on `device` holding src (a real copy even when src is already there, as the bytes
  // cross tiers of one physical memory on an emulated device).
  torch::Tensor copied_to(const torch::Tensor& src, torch::Device device);

  TransferTimes times() const;
  void reset_times();

 private:
  struct Job {
    torch::Tensor dst, src, into;  // into: added dst after the copy (undefined: none)
  };
  Ticket queue(Job job);
  void work();

  mutable std::mutex mutex_;
  std::condition_variable queued_, finished_;
  std::deque<Job> jobs_;
  Ticket issued_ = 0, done_ = 0;
  std::exception_ptr error_;
  bool stopping_ = false;
  TransferTimes times_;
  std::thread worker_;  // last: starts once the rest is built
};

}  // namespace cr
