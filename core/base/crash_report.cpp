#include "core/base/crash_report.h"

#include <execinfo.h>
#include <ucontext.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "core/base/log.h"

namespace cr {
namespace {

// Only async-signal-safe calls in here: snprintf into a stack buffer, write(2),
// backtrace_symbols_fd, signal, raise.
extern "C" void report_fatal_signal(int signal, siginfo_t* info, void* context) {
  char line[256];
  int length = std::snprintf(line, sizeof line, "fatal: signal %d (%s) on rank %d at address %p\n", signal,
                             strsignal(signal), log_rank(), info ? info->si_addr : nullptr);
  if (length > 0) (void)!write(STDERR_FILENO, line, static_cast<size_t>(length));
#if defined(__x86_64__)
  // A jump through a null pointer leaves nothing to unwind: the caller is the word at the stack top.
  const auto* registers = static_cast<const ucontext_t*>(context)->uc_mcontext.gregs;
  const auto* stack_top = reinterpret_cast<void* const*>(registers[REG_RSP]);
  length = std::snprintf(line, sizeof line, "instruction %p, return address on the stack %p\n",
                         reinterpret_cast<void*>(registers[REG_RIP]), stack_top ? stack_top[0] : nullptr);
  if (length > 0) (void)!write(STDERR_FILENO, line, static_cast<size_t>(length));
  backtrace_symbols_fd(const_cast<void* const*>(stack_top), 1, STDERR_FILENO);
#endif
  (void)!write(STDERR_FILENO, "backtrace:\n", 11);
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
  struct sigaction action {};
  action.sa_sigaction = report_fatal_signal;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(signal, &action, nullptr);
}

}  // namespace cr
