#include "memory/gemini/tier_transfers.h"

#include <algorithm>
#include <chrono>

namespace cr {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TierTransfers::TierTransfers() : worker_([this] { work(); }) {}

TierTransfers::~TierTransfers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queued_.notify_all();
  worker_.join();
}

TierTransfers::Ticket TierTransfers::start(torch::Tensor dst, torch::Tensor src) {
  return queue({std::move(dst), std::move(src), torch::Tensor()});
}

TierTransfers::Ticket TierTransfers::start_accumulate(torch::Tensor into, torch::Tensor src) {
  auto staged = torch::empty(src.sizes(), src.options().device(torch::kCPU));
  return queue({std::move(staged), std::move(src), std::move(into)});
}

TierTransfers::Ticket TierTransfers::queue(Job job) {
  std::lock_guard<std::mutex> lock(mutex_);
  jobs_.push_back(std::move(job));
  queued_.notify_one();
  return ++issued_;
}

void TierTransfers::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    queued_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    const auto began = std::chrono::steady_clock::now();
    double took = 0.0;
    std::exception_ptr error;
    try {
      torch::NoGradGuard no_grad;
      job.dst.copy_(job.src);
      took = seconds_since(began);
      if (job.into.defined()) job.into.add_(job.dst);
    } catch (...) {
      took = seconds_since(began);
      error = std::current_exception();
    }
    job = {};  // the buffers go back before anyone is told
    lock.lock();
    times_.seconds += took;
    if (error && !error_) error_ = error;
    ++done_;
    finished_.notify_all();
  }
}

void TierTransfers::wait(Ticket ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (done_ < ticket) {
    const auto began = std::chrono::steady_clock::now();
    finished_.wait(lock, [&] { return done_ >= ticket; });
    times_.exposed += seconds_since(began);
  }
  if (error_) {
    const auto error = error_;
    error_ = nullptr;
    std::rethrow_exception(error);
  }
}

void TierTransfers::wait_all() {
  Ticket last = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last = issued_;
  }
  wait(last);
}

void TierTransfers::copy(const torch::Tensor& dst, const torch::Tensor& src) {
  const auto began = std::chrono::steady_clock::now();
  {
    torch::NoGradGuard no_grad;
    dst.copy_(src);
  }
  const double took = seconds_since(began);
  std::lock_guard<std::mutex> lock(mutex_);
  times_.seconds += took;
  times_.exposed += took;
}

torch::Tensor TierTransfers::copied_to(const torch::Tensor& src, torch::Device device) {
  auto out = torch::empty(src.sizes(), src.options().device(device));
  copy(out, src);
  return out;
}

TransferTimes TierTransfers::times() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return times_;
}

void TierTransfers::reset_times() {
  std::lock_guard<std::mutex> lock(mutex_);
  times_ = {};
}

}  // namespace cr
