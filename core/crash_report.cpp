#include "core/crash_report.h"

#include <execinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "core/log.h"

namespace cr {
namespace {

// Only async-signal-safe calls in here: write(2), backtrace_symbols_fd, signal, raise.
extern "C" void report_fatal_signal(int signal) {
  char line[128];
  const int length = std::snprintf(line, sizeof line, "fatal: signal %d (%s) on rank %d; backtrace:\n", signal,
                                   strsignal(signal), log_rank());
  if (length > 0) (void)!write(STDERR_FILENO, line, static_cast<size_t>(length));
  void* frames[64];
  const int depth = backtrace(frames, 64);
  backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

}  // namespace

void install_crash_report() {
  // backtrace() loads libgcc lazily; do it now rather than inside the handler.
  void* warm_up[1];
  backtrace(warm_up, 1);
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(signal, report_fatal_signal);
}

}  // namespace cr
