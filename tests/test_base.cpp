// core/base: the crash report and message helpers.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "core/base/crash_report.h"
#include "core/base/strings.h"

namespace {

// Deeper on every call, with a frame the compiler cannot drop.
int recurse(volatile int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  return recurse(depth + 1) + frame[0];
}

// What a child that installs the crash report and then runs `crash` writes to stderr, and how it ended.
std::pair<std::string, int> crash_in_child(void (*crash)()) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDERR_FILENO);
    cr::install_crash_report();
    crash();
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) output.append(buffer, got);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {output, WIFSIGNALED(status) ? WTERMSIG(status) : 0};
}

}  // namespace

TEST_CASE("a stack overflow still reports the signal and a backtrace", "[base]") {
  const auto [output, signal] = crash_in_child([] { recurse(0); });
  CHECK(signal == SIGSEGV);
  CHECK_THAT(output, Catch::StartsWith("fatal: signal 11 (segmentation fault) on rank 0 at address 0x"));
  CHECK_THAT(output, Catch::Contains("backtrace:"));
}

TEST_CASE("an abort reports the signal", "[base]") {
  const auto [output, signal] = crash_in_child([] { ::abort(); });
  CHECK(signal == SIGABRT);
  CHECK_THAT(output, Catch::StartsWith("fatal: signal 6 (aborted) on rank 0"));
}

TEST_CASE("shortened keeps short text and cuts long text in the middle, saying its length", "[base]") {
  CHECK(cr::shortened("run_dir") == "run_dir");
  CHECK(cr::shortened(std::string(200, 'a')) == std::string(200, 'a'));
  const std::string cut = cr::shortened(std::string(100, 'a') + std::string(1000, 'b'), 20);
  CHECK(cut == "aaaaaaaaaa...(1100 bytes)...bbbbbbbbbb");
}
