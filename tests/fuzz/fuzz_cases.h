// What every fuzzing test shares: children isolated per case, fresh case directories, and the
// special files that can stand where a file is expected.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include "mutators.h"

namespace cr::fuzz {

namespace fs = std::filesystem;

// A broken property of a loaded input (as opposed to a refused one): reported as an escaped
// exception of this type.
struct PropertyViolation : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Children fork from this process: LibTorch must not have started worker threads, which a
// forked child cannot use.
inline void single_threaded() { torch::set_num_threads(1); }

// A fresh directory per case under `root`, holding a copy of `base` when given.
inline fs::path case_dir(const fs::path& root, int index, const std::optional<fs::path>& base = std::nullopt) {
  const fs::path dir = root / ("case-" + std::to_string(index));
  fs::remove_all(dir);
  if (base) {
    fs::copy(*base, dir, fs::copy_options::recursive);
  } else {
    fs::create_directories(dir);
  }
  return dir;
}

// Makes a special file at a path; the bytes are the regular file's, for the kinds that keep them.
using MakeSpecial = std::function<void(const fs::path&, const std::string&)>;

// What can stand where a file is expected: a directory, a FIFO (no writer: opening it for
// reading blocks), an unreadable file (root reads it anyway, so it then loads), a dangling
// symlink, a symlink loop.
inline const std::vector<std::pair<std::string, MakeSpecial>>& special_files() {
  static const std::vector<std::pair<std::string, MakeSpecial>> kinds = {
      {"a directory", [](const fs::path& path, const std::string&) { fs::create_directories(path); }},
      {"a FIFO", [](const fs::path& path, const std::string&) { REQUIRE(::mkfifo(path.c_str(), 0600) == 0); }},
      {::geteuid() == 0 ? "a mode-000 file (read anyway: running as root)" : "an unreadable file (mode 000)",
       [](const fs::path& path, const std::string& bytes) {
         write_file(path, bytes);
         fs::permissions(path, fs::perms::none);
       }},
      {"a dangling symlink", [](const fs::path& path, const std::string&) { fs::create_symlink("absent", path); }},
      {"a symlink loop", [](const fs::path& path, const std::string&) { fs::create_symlink(path.filename(), path); }},
  };
  return kinds;
}

}  // namespace cr::fuzz
