// Runs one fuzz case in a forked child, so that a crash, an abort, a hang or a runaway
// allocation ends that case alone and is reported as what it is instead of ending the suite.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cxxabi.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <typeinfo>

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

// The child: default signal dispositions (the test framework's handlers would report the
// crash as the parent's), a bounded address space, then the body; one tagged line back.
[[noreturn]] inline void run_child(int fd, const std::function<void()>& body) {
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGPIPE}) ::signal(sig, SIG_DFL);
  if (const rlim_t used = current_address_space(); used > 0) {
    const rlimit limit{used + kAddressHeadroom, used + kAddressHeadroom};
    ::setrlimit(RLIMIT_AS, &limit);
  }
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
  write_all(fd, report);
  ::_exit(0);
}

inline Outcome outcome_of(const std::string& report, int status, bool timed_out) {
  if (timed_out) return {Outcome::Kind::Hang, "still running after the time limit"};
  if (WIFSIGNALED(status)) return {Outcome::Kind::Signal, strsignal(WTERMSIG(status))};
  if (report.empty()) return {Outcome::Kind::Lost, "exit status " + std::to_string(WEXITSTATUS(status))};
  const std::string detail = report.substr(1);
  switch (report[0]) {
    case 'L': return {Outcome::Kind::Loaded, ""};
    case 'E': return {Outcome::Kind::ProjectError, detail};
    default: return {Outcome::Kind::OtherException, detail};
  }
}

}  // namespace detail

// Runs `body` in a child process and reports how it ended. Its side effects on this process's
// memory are lost; files it writes stay.
inline Outcome run_isolated(const std::function<void()>& body,
                            std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  int fds[2];
  if (::pipe(fds) != 0) return {Outcome::Kind::Lost, "pipe failed"};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {Outcome::Kind::Lost, "fork failed"};
  }
  if (pid == 0) {
    ::close(fds[0]);
    detail::run_child(fds[1], body);
  }
  ::close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::string report;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd waiting{fds[0], POLLIN, 0};
    if (::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;  // end of file: the child has finished
    report.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return detail::outcome_of(report, status, timed_out);
}

}  // namespace cr::fuzz
