// The collective watchdog's deadlines, on fake operations in one process (no MPI calls are made
// while nothing expires): an operation's time starts when it could first progress.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "parallel/collective_watchdog.h"

using cr::detail::GroupState;
using cr::detail::PendingOp;
using cr::detail::TrackedWork;
using State = TrackedWork::State;

namespace {

// Completes when its flag is set.
class FlagOp final : public PendingOp {
 public:
  explicit FlagOp(const std::atomic<bool>& done) : done_(done) {}
  bool test() override { return done_.load(); }

 private:
  const std::atomic<bool>& done_;
};

void sleep_s(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

}  // namespace

TEST_CASE("an operation's deadline runs from the group's last completion, not from its issue", "[watchdog]") {
  auto group = std::make_shared<GroupState>();
  group->name = "test";
  group->timeout_s = 1.0;
  std::atomic<bool> first_done{false}, second_done{false};
  // Issued together, as gradient buckets are; the second can progress only after the first.
  TrackedWork first(group, "first", 1, std::make_unique<FlagOp>(first_done));
  TrackedWork second(group, "second", 2, std::make_unique<FlagOp>(second_done));
  sleep_s(0.6);
  first_done = true;
  CHECK(first.check() == State::complete);
  sleep_s(0.6);  // 1.2 s after issue, 0.6 s after the first completed
  CHECK(second.check() == State::pending);
  sleep_s(0.8);  // 1.4 s after the first completed
  CHECK(second.check() == State::expired);
  second_done = true;  // so that its destructor's wait returns
  CHECK(second.check() == State::complete);
}

TEST_CASE("a lone operation expires a timeout after its issue", "[watchdog]") {
  auto group = std::make_shared<GroupState>();
  group->name = "test";
  group->timeout_s = 0.3;
  std::atomic<bool> done{false};
  TrackedWork work(group, "lone", 1, std::make_unique<FlagOp>(done));
  CHECK(work.check() == State::pending);
  sleep_s(0.5);
  CHECK(work.check() == State::expired);
  done = true;
  CHECK(work.check() == State::complete);
}
