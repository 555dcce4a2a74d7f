// Runs fuzz cases in forked children, so that a crash, an abort, a hang or a runaway allocation
// ends that case alone and is reported as what it is instead of ending the suite. Forking a
// process that holds LibTorch costs milliseconds, so one child runs many cases in turn.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cxxabi.h>

#include <cerrno>
#include <cstdint>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "core/base/error.h"

namespace cr::fuzz {

struct Outcome {
  enum class Kind {
    Loaded,          // the loader accepted the input
    ProjectError,    // a cr::Error, the clean way to refuse it
    OtherException,  // any other exception type escaped: a defect
    Signal,          // the child died on a signal (crash, abort): a defect
    Hang,            // the child did not finish in time: a defect
    Lost,            // the child exited without reporting: a defect
  };
  Kind kind = Kind::Lost;
  std::string detail;  // the error message, the exception's type and message, the signal

  bool clean() const { return kind == Kind::Loaded || kind == Kind::ProjectError; }
};

inline const char* kind_name(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::Loaded: return "loaded";
    case Outcome::Kind::ProjectError: return "cr::Error";
    case Outcome::Kind::OtherException: return "escaped exception";
    case Outcome::Kind::Signal: return "signal";
    case Outcome::Kind::Hang: return "hang";
    case Outcome::Kind::Lost: return "no report";
  }
  return "?";
}

namespace detail {

// Messages travel through a pipe; a case's message is never usefully longer than this.
constexpr size_t kMaxReport = 16 * 1024;

// Headroom above the address space the process already has (LibTorch reserves gigabytes of it
// at start-up): an input of a few kilobytes never needs a gigabyte, so an allocation that large
// fails with std::bad_alloc and shows up as an escaped exception.
constexpr rlim_t kAddressHeadroom = rlim_t{1} << 30;

inline rlim_t current_address_space() {
  std::ifstream status("/proc/self/status");
  std::string word;
  while (status >> word) {
    if (word == "VmSize:") {
      rlim_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
  }
  return 0;
}

inline std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && text ? text.get() : name;
}

inline void write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// One tagged report: "L" loaded, "E" + a cr::Error's message, "X" + another exception.
inline std::string report_of(const std::function<void()>& body) {
  std::string report;
  try {
    body();
    report = "L";
  } catch (const cr::Error& e) {
    report = std::string("E") + e.what();
  } catch (const std::exception& e) {
    report = "X" + demangled(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    report = "Xan exception not derived from std::exception";
  }
  if (report.size() > kMaxReport) report.resize(kMaxReport);
  return report;
}

// The child: default signal dispositions (the test framework's handlers would report a crash
// as the parent's), a bounded address space, then the bodies from `first` on, each report
// sent as a 4-byte length and the report.
[[noreturn]] inline void run_child(int fd, const std::vector<std::function<void()>>& bodies, size_t first) {
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGPIPE}) ::signal(sig, SIG_DFL);
  if (const rlim_t used = current_address_space(); used > 0) {
    const rlimit limit{used + kAddressHeadroom, used + kAddressHeadroom};
    ::setrlimit(RLIMIT_AS, &limit);
  }
  for (size_t i = first; i < bodies.size(); ++i) {
    const std::string report = report_of(bodies[i]);
    const auto length = static_cast<uint32_t>(report.size());
    write_all(fd, std::string(reinterpret_cast<const char*>(&length), 4) + report);
  }
  ::_exit(0);
}

inline Outcome outcome_of(const std::string& report) {
  const std::string detail = report.substr(1);
  switch (report[0]) {
    case 'L': return {Outcome::Kind::Loaded, ""};
    case 'E': return {Outcome::Kind::ProjectError, detail};
    default: return {Outcome::Kind::OtherException, detail};
  }
}

inline Outcome outcome_of_exit(int status) {
  if (WIFSIGNALED(status)) return {Outcome::Kind::Signal, strsignal(WTERMSIG(status))};
  return {Outcome::Kind::Lost, "exit status " + std::to_string(WEXITSTATUS(status))};
}

// Takes the complete reports off the front of `buffer`.
inline void take_reports(std::string& buffer, std::vector<Outcome>& outcomes) {
  for (;;) {
    if (buffer.size() < 4) return;
    uint32_t length = 0;
    std::memcpy(&length, buffer.data(), 4);
    if (buffer.size() < 4 + length) return;
    outcomes.push_back(outcome_of(buffer.substr(4, length)));
    buffer.erase(0, 4 + length);
  }
}

// Runs the bodies that have no outcome yet in one child, until they are done or one of them
// ends the child (a signal, a hang past `limit`), whose outcome says so. Adds at least one.
inline void run_some(const std::vector<std::function<void()>>& bodies, std::vector<Outcome>& outcomes,
                     std::chrono::milliseconds limit) {
  int fds[2];
  if (::pipe(fds) != 0) {
    outcomes.push_back({Outcome::Kind::Lost, "pipe failed"});
    return;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    outcomes.push_back({Outcome::Kind::Lost, "fork failed"});
    return;
  }
  if (pid == 0) {
    ::close(fds[0]);
    run_child(fds[1], bodies, outcomes.size());
  }
  ::close(fds[1]);
  std::string buffer;
  bool timed_out = false;
  auto deadline = std::chrono::steady_clock::now() + limit;  // for the case running now
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd waiting{fds[0], POLLIN, 0};
    if (::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n <= 0) break;  // end of file: the child has exited
    buffer.append(chunk, static_cast<size_t>(n));
    const size_t before = outcomes.size();
    take_reports(buffer, outcomes);
    if (outcomes.size() > before) deadline = std::chrono::steady_clock::now() + limit;
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (outcomes.size() == bodies.size()) return;
  outcomes.push_back(timed_out ? Outcome{Outcome::Kind::Hang, "still running after the time limit"} : outcome_of_exit(status));
}

}  // namespace detail

// Runs each body as if in a child process of its own: a child runs them in turn and a new one
// takes over after a case that ended it. Side effects on this process's memory are lost; files
// written stay.
inline std::vector<Outcome> run_isolated(const std::vector<std::function<void()>>& bodies,
                                         std::chrono::milliseconds limit = std::chrono::seconds(3)) {
  std::vector<Outcome> outcomes;
  while (outcomes.size() < bodies.size()) detail::run_some(bodies, outcomes, limit);
  return outcomes;
}

inline Outcome run_isolated(const std::function<void()>& body) {
  return run_isolated(std::vector<std::function<void()>>{body}).front();
}

}  // namespace cr::fuzz
