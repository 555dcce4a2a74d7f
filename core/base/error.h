// Errors shared by every folder: one exception type whose message carries its context.
// This header and core/log.h are leaf utilities that any folder may include.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace cr {

// A user-facing failure: bad config, missing file, corrupt data. The message names what is
// wrong and where (file, key path, tensor name); the CLI prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A config file or --set override that is invalid; the message starts with "file:line:col:".
class ConfigError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace cr

// Internal invariant check: reports the source location, since it means a bug, not bad input.
#define CR_CHECK(cond, ...)                                                                  \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      throw ::cr::Error(fmt::format("{}:{}: check failed: {}: {}", __FILE__, __LINE__, #cond, \
                                    fmt::format(__VA_ARGS__)));                              \
    }                                                                                        \
  } while (0)
