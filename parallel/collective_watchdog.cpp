#include "parallel/collective_watchdog.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"
#include "core/base/log.h"

namespace cr::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kCounterSlot = 0;
constexpr int kClaimSlot = 1;
// How long a timed-out member waits for one-sided answers before reporting what it has.
constexpr double kReadWaitS = 2.0;
// How long a member that lost the claim waits for the reporter's MPI_Abort before its own.
constexpr double kReporterGraceS = 30.0;

bool wait_for_requests(std::vector<MPI_Request>& requests, std::vector<bool>& done, double wait_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(wait_s);
  for (;;) {
    bool all = true;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (done[i]) continue;
      int flag = 0;
      if (MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) flag = 0;
      done[i] = flag != 0;
      all = all && done[i];
    }
    if (all) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// The process-wide board that elects one reporter per job.
std::unique_ptr<ArrivalBoard> g_job_board;
MPI_Comm g_job_comm = MPI_COMM_NULL;

// Tests every tracked operation regularly: enforces deadlines of operations nobody waits on
// and, since OpenMPI advances nonblocking collectives only inside MPI calls, keeps them moving
// while the owning thread computes. Also keeps one-sided reads of this rank's counters served.
class Watchdog {
 public:
  void add(TrackedWork* work) {
    std::lock_guard<std::mutex> lock(mutex_);
    works_.push_back(work);
    wake_.notify_one();
  }
  void remove(TrackedWork* work) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& w : works_) {
      if (w == work) {
        w = works_.back();
        works_.pop_back();
        return;
      }
    }
  }
  void start(MPI_Comm progress_comm) {
    progress_comm_ = progress_comm;
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      wake_.notify_one();
    }
    thread_.join();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      // Short ticks while operations are in flight (progress), long ones when idle.
      wake_.wait_for(lock, works_.empty() ? std::chrono::milliseconds(100) : std::chrono::milliseconds(1));
      if (stopping_) break;
      TrackedWork* expired = nullptr;
      for (TrackedWork* work : works_) {
        if (work->check() == TrackedWork::State::expired) {
          expired = work;
          break;
        }
      }
      if (expired) {
        // Reported without the lock: the report waits seconds for other ranks' answers, and
        // threads finishing other operations must not block on this one meanwhile. The work
        // stays alive: its owner waits on it, and it can no longer complete.
        lock.unlock();
        expired->abort_expired();
      }
      int flag = 0;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, progress_comm_, &flag, MPI_STATUS_IGNORE);
    }
  }

  std::mutex mutex_;  // guards works_ and stopping_; held while polling, so remove() waits for it
  std::condition_variable wake_;
  std::vector<TrackedWork*> works_;
  bool stopping_ = false;
  std::thread thread_;
  MPI_Comm progress_comm_ = MPI_COMM_NULL;
};

// Never destroyed: an exit without mpi_finalize must not destroy a running std::thread.
Watchdog& watchdog() {
  static Watchdog* instance = new Watchdog;
  return *instance;
}

std::string join_ranks(const std::vector<int>& ranks) { return fmt::format("{}", fmt::join(ranks, ",")); }

std::string who_never_arrived(const GroupState& group, int64_t seq) {
  if (!group.board) return "the members that never arrived are unknown (no one-sided MPI windows)";
  const std::vector<int64_t> counters = group.board->read_all(kReadWaitS);
  std::vector<int> missing, silent;
  for (size_t r = 0; r < counters.size(); ++r) {
    if (counters[r] < 0)
      silent.push_back(group.world_ranks[r]);
    else if (counters[r] < seq)
      missing.push_back(group.world_ranks[r]);
  }
  if (missing.empty() && silent.empty()) {
    return "every member started it: ranks must issue the same collectives in the same order with "
           "the same sizes and dtypes";
  }
  std::string text;
  if (!missing.empty()) text = "never arrived: " + join_ranks(missing);
  if (!silent.empty()) {
    text += (text.empty() ? "" : "; ") + ("counters unreadable on: " + join_ranks(silent));
  }
  return text;
}

}  // namespace

std::unique_ptr<ArrivalBoard> ArrivalBoard::create(MPI_Comm comm) {
  // An MPI without usable one-sided support fails here; timeouts then still abort, without names.
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int64_t* slots = nullptr;
  MPI_Win window = MPI_WIN_NULL;
  if (MPI_Win_allocate(2 * sizeof(int64_t), sizeof(int64_t), MPI_INFO_NULL, comm, &slots, &window) !=
      MPI_SUCCESS) {
    return nullptr;
  }
  MPI_Win_set_errhandler(window, MPI_ERRORS_RETURN);
  slots[kCounterSlot] = 0;
  slots[kClaimSlot] = 0;
  int size = 0;
  MPI_Comm_size(comm, &size);
  // Nobody may read a slot before its owner zeroed it.
  MPI_Barrier(comm);
  return std::unique_ptr<ArrivalBoard>(new ArrivalBoard(window, slots, size));
}

ArrivalBoard::ArrivalBoard(MPI_Win window, int64_t* slots, int size)
    : window_(window), slots_(slots), size_(size) {}

ArrivalBoard::~ArrivalBoard() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Win_free(&window_);
}

void ArrivalBoard::publish(int64_t started) {
  // A plain aligned store: MPI's unified memory model (the only one OpenMPI and MPICH offer for
  // MPI_Win_allocate) makes it visible to later remote reads without a lock epoch.
  __atomic_store_n(&slots_[kCounterSlot], started, __ATOMIC_RELEASE);
}

std::vector<int64_t> ArrivalBoard::read_all(double wait_s) {
  std::vector<int64_t> counters(size_, -1);
  // Results land in memory that is leaked if some member never answers: a late answer must not
  // write into freed memory while the job is being aborted.
  auto* results = new int64_t[size_];
  std::vector<MPI_Request> requests(size_, MPI_REQUEST_NULL);
  std::vector<bool> done(size_, false);
  // NOCHECK: nobody ever locks exclusively, so no lock needs to be acquired at the targets.
  if (MPI_Win_lock_all(MPI_MODE_NOCHECK, window_) != MPI_SUCCESS) return counters;
  for (int r = 0; r < size_; ++r) {
    if (MPI_Rget(&results[r], 1, MPI_INT64_T, r, kCounterSlot, 1, MPI_INT64_T, window_, &requests[r]) !=
        MPI_SUCCESS) {
      done[r] = true;
      results[r] = -1;
    }
  }
  const bool all = wait_for_requests(requests, done, wait_s);
  for (int r = 0; r < size_; ++r) {
    if (done[r]) counters[r] = results[r];
  }
  if (all) {
    MPI_Win_unlock_all(window_);
    delete[] results;
  }
  return counters;
}

bool ArrivalBoard::claim_first(double wait_s) {
  static const int64_t kOne = 1;
  auto* previous = new int64_t(-1);  // leaked if member 0 never answers, as in read_all
  std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
  std::vector<bool> done(1, false);
  if (MPI_Win_lock_all(MPI_MODE_NOCHECK, window_) != MPI_SUCCESS) return true;
  if (MPI_Rget_accumulate(&kOne, 1, MPI_INT64_T, previous, 1, MPI_INT64_T, 0, kClaimSlot, 1, MPI_INT64_T,
                          MPI_SUM, window_, &request[0]) != MPI_SUCCESS) {
    return true;
  }
  if (!wait_for_requests(request, done, wait_s)) return true;
  MPI_Win_unlock_all(window_);
  const bool first = *previous == 0;
  delete previous;
  return first;
}

int64_t GroupState::begin_collective() {
  ++started;
  if (board) board->publish(started);
  return started;
}

PendingOp::~PendingOp() = default;

TrackedWork::TrackedWork(std::shared_ptr<GroupState> group, std::string what, int64_t seq,
                         std::unique_ptr<PendingOp> op, std::function<void()> finish)
    : group_(std::move(group)),
      what_(std::move(what)),
      seq_(seq),
      issued_(Clock::now()),
      op_(std::move(op)),
      finish_(std::move(finish)) {
  watchdog().add(this);
}

TrackedWork::~TrackedWork() {
  // The buffers must stay alive until the backend is done with them.
  try {
    wait();
  } catch (const std::exception& e) {
    error_line(e.what());
  }
  watchdog().remove(this);
}

TrackedWork::State TrackedWork::check() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!complete_) {
      try {
        complete_ = op_->test();
      } catch (const std::exception& e) {
        error_ = e.what();
        complete_ = true;
      }
      if (complete_) {
        const Clock::rep now = Clock::now().time_since_epoch().count();
        Clock::rep last = group_->last_completion.load();
        while (last < now && !group_->last_completion.compare_exchange_weak(last, now)) {
        }
      }
    }
    if (complete_) return State::complete;
  }
  const Clock::time_point could_start =
      std::max(issued_, Clock::time_point(Clock::duration(group_->last_completion.load())));
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(group_->timeout_s));
  return Clock::now() > could_start + timeout ? State::expired : State::pending;
}

void TrackedWork::abort_expired() const { abort_on_timeout(*group_, what_, seq_); }

bool TrackedWork::poll() {
  const State state = check();
  if (state == State::expired) abort_expired();
  return state == State::complete;
}

void TrackedWork::wait() {
  // Spin briefly: short collectives finish within microseconds and OpenMPI advances them only
  // inside MPI calls. Then sleep, backing off to a millisecond, leaving the cores to compute.
  const auto spin_until = Clock::now() + std::chrono::milliseconds(1);
  auto pause = std::chrono::microseconds(50);
  while (!poll()) {
    if (Clock::now() < spin_until) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(2 * pause, std::chrono::microseconds(1000));
    }
  }
  finish();
}

bool TrackedWork::test() {
  if (!poll()) return false;
  finish();
  return true;
}

void TrackedWork::finish() {
  if (finished_) return;
  finished_ = true;
  if (!error_.empty()) {
    fail("{} on group '{}' (rank {} of {}) failed: {}", what_, group_->name, group_->rank,
         group_->world_ranks.size(), error_);
  }
  if (finish_) finish_();
}

void abort_on_timeout(const GroupState& group, const std::string& what, int64_t seq) {
  // One reporter per process (the watchdog and a waiter may both see the deadline pass)...
  static std::atomic<bool> reporting{false};
  if (reporting.exchange(true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // ...and one per job.
  if (g_job_board && !g_job_board->claim_first(kReadWaitS)) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kReporterGraceS));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  std::string message = fmt::format("collective timeout: {} on group '{}' did not complete within {:g} s",
                                    what, group.name, group.timeout_s);
  if (seq > 0) {
    message += fmt::format(" (collective #{} of the group); {}", seq, who_never_arrived(group, seq));
  }
  error_line(message + "; aborting the job");
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // not reached: MPI_Abort does not return
}

void start_watchdog(bool with_thread) {
  MPI_Comm_dup(MPI_COMM_WORLD, &g_job_comm);
  g_job_board = ArrivalBoard::create(g_job_comm);
  if (with_thread) watchdog().start(g_job_comm);
}

void stop_watchdog() {
  watchdog().stop();
  g_job_board.reset();
  if (g_job_comm != MPI_COMM_NULL) MPI_Comm_free(&g_job_comm);
}

}  // namespace cr::detail
