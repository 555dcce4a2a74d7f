#include "core/base/crash_report.h"

#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "core/base/log.h"

namespace cr {
namespace {

// A line assembled without the allocator or stdio (snprintf and strsignal are not
// async-signal-safe): fixed text, decimal and hexadecimal numbers.
class SignalSafeLine {
 public:
  SignalSafeLine& text(const char* s) {
    while (*s && length_ < sizeof buffer_) buffer_[length_++] = *s++;
    return *this;
  }
  SignalSafeLine& number(int64_t value) {
    if (value < 0) {
      text("-");
      value = -value;
    }
    char digits[24];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value > 0);
    while (n > 0 && length_ < sizeof buffer_) buffer_[length_++] = digits[--n];
    return *this;
  }
  SignalSafeLine& address(const void* pointer) {
    const auto value = reinterpret_cast<uintptr_t>(pointer);
    text("0x");
    for (int shift = 60; shift >= 0; shift -= 4) {
      const unsigned nibble = (value >> shift) & 0xf;
      if (length_ < sizeof buffer_) buffer_[length_++] = "0123456789abcdef"[nibble];
    }
    return *this;
  }
  void write_line() {
    text("\n");
    (void)!::write(STDERR_FILENO, buffer_, length_);
    length_ = 0;
  }

 private:
  char buffer_[256];
  size_t length_ = 0;
};

const char* signal_text(int signal) {
  switch (signal) {
    case SIGSEGV: return "segmentation fault";
    case SIGBUS: return "bus error";
    case SIGFPE: return "arithmetic exception";
    case SIGILL: return "illegal instruction";
    case SIGABRT: return "aborted";
    default: return "fatal signal";
  }
}

// A fault this close to the stack pointer is the stack's guard page.
constexpr uintptr_t kGuardDistance = 1 << 16;

// Only async-signal-safe calls in here, and backtrace(), loaded before any crash.
extern "C" void report_fatal_signal(int signal, siginfo_t* info, void* context) {
  SignalSafeLine line;
  line.text("fatal: signal ").number(signal).text(" (").text(signal_text(signal)).text(") on rank ").number(log_rank());
  line.text(" at address ").address(info ? info->si_addr : nullptr).write_line();
#if defined(__x86_64__)
  // A jump through a null pointer leaves nothing to unwind: the caller is the word at the stack top.
  const auto* registers = static_cast<const ucontext_t*>(context)->uc_mcontext.gregs;
  const auto* stack_top = reinterpret_cast<void* const*>(registers[REG_RSP]);
  line.text("instruction ").address(reinterpret_cast<void*>(registers[REG_RIP]));
  // After a stack overflow the stack pointer is at the guard page: reading there would fault again.
  const auto fault = reinterpret_cast<uintptr_t>(info ? info->si_addr : nullptr);
  const auto top = reinterpret_cast<uintptr_t>(stack_top);
  const bool stack_overflow = fault + kGuardDistance > top && fault < top + kGuardDistance;
  if (stack_top && !stack_overflow) {
    line.text(", return address on the stack ").address(stack_top[0]).write_line();
    backtrace_symbols_fd(const_cast<void* const*>(stack_top), 1, STDERR_FILENO);
  } else {
    line.text(stack_overflow ? " (stack overflow)" : "").write_line();
  }
#endif
  line.text("backtrace:").write_line();
  void* frames[64];
  const int depth = backtrace(frames, 64);
  backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

// The handler's own stack: a stack overflow leaves none to run it on.
constexpr size_t kAlternateStackBytes = 1 << 18;  // the unwinder needs room too
alignas(16) char g_alternate_stack[kAlternateStackBytes];

}  // namespace

void install_crash_report() {
  // backtrace() loads libgcc lazily; do it now rather than inside the handler.
  void* warm_up[1];
  backtrace(warm_up, 1);
  stack_t stack {};
  stack.ss_sp = g_alternate_stack;
  stack.ss_size = sizeof g_alternate_stack;
  sigaltstack(&stack, nullptr);
  struct sigaction action {};
  action.sa_sigaction = report_fatal_signal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(signal, &action, nullptr);
}

}  // namespace cr
