// Timeouts of communication. Every operation in flight is tracked until it completes; one that
// does not complete within its group's timeout aborts the whole job after one message naming
// the operation, the group and the members that never arrived. Shared by the MPI and NCCL
// backends (NCCL groups are bootstrapped from MPI, so MPI is always there).
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace cr::detail {

// Per member of a group, the number of collectives it has started, kept in an MPI window that
// the others read one-sidedly (passive target): a member stuck elsewhere answers no messages,
// but its counter can still be read.
class ArrivalBoard {
 public:
  // Collective over `comm`. Null when the MPI library offers no one-sided windows here.
  static std::unique_ptr<ArrivalBoard> create(MPI_Comm comm);
  ~ArrivalBoard();  // collective over the group

  void publish(int64_t started);  // this member's counter
  // Every member's counter; -1 where a counter could not be read within `wait_s`.
  std::vector<int64_t> read_all(double wait_s);
  // True for exactly one caller across the group (also when member 0 does not answer in time:
  // then a second message beats none).
  bool claim_first(double wait_s);

 private:
  ArrivalBoard(MPI_Win window, int64_t* slots, int size);
  MPI_Win window_;
  int64_t* slots_;  // [counter, claims], in the window
  int size_;
};

// What the operations of one group share. Operations hold it, so it outlives a communicator
// destroyed while work is still in flight.
struct GroupState {
  std::string name;
  std::vector<int> world_ranks;
  int rank = 0;
  double timeout_s = 0;
  int64_t started = 0;                  // collectives this member has started
  std::unique_ptr<ArrivalBoard> board;  // null without one-sided windows
  // When an operation of the group last completed: the next one could not progress before, so
  // its deadline runs from then at the earliest.
  std::atomic<std::chrono::steady_clock::rep> last_completion{0};

  int64_t begin_collective();  // counts one more collective and publishes it; returns its number
};

// The backend's side of an operation in flight: an MPI request, a CUDA event.
class PendingOp {
 public:
  virtual ~PendingOp();
  // True once complete; throws cr::Error when the backend reports a failure. Calls are
  // serialised by TrackedWork (an MPI request must not be tested by two threads at once).
  virtual bool test() = 0;
};

// A CommWork whose deadline is enforced both by its waiter and by the watchdog thread, so a
// hang is reported even when nobody waits on the operation.
class TrackedWork final : public CommWork {
 public:
  // seq: the operation's number among the group's collectives (begin_collective), 0 for point
  // to point. finish runs once, on the waiting thread, after completion.
  TrackedWork(std::shared_ptr<GroupState> group, std::string what, int64_t seq, std::unique_ptr<PendingOp> op,
              std::function<void()> finish = {});
  ~TrackedWork() override;

  void wait() override;
  bool test() override;
  // True once complete; past the deadline it aborts the job. Any thread.
  bool poll();

  enum class State { pending, complete, expired };
  // Tests the operation; never aborts (the watchdog aborts after letting go of its lock). Any thread.
  State check();
  [[noreturn]] void abort_expired() const;

 private:
  void finish();

  std::shared_ptr<GroupState> group_;
  std::string what_;
  int64_t seq_;
  std::chrono::steady_clock::time_point issued_;
  std::unique_ptr<PendingOp> op_;
  std::function<void()> finish_;
  std::mutex mutex_;  // guards op_->test(), complete_ and error_
  bool complete_ = false;
  std::string error_;
  bool finished_ = false;  // waiting thread only
};

// Prints one message for the whole job (the first member to claim it reports; the others wait
// to be killed) and calls MPI_Abort.
[[noreturn]] void abort_on_timeout(const GroupState& group, const std::string& what, int64_t seq);

// Process-wide set-up, collective over MPI_COMM_WORLD: the board that elects the one reporter,
// and the watchdog thread (only when MPI allows calls from several threads).
void start_watchdog(bool with_thread);
void stop_watchdog();

}  // namespace cr::detail
