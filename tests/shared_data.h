// What a test needs beyond the build: files in ../shared/data (CR_SHARED_DATA), mpirun. A
// checkout without them skips those tests with a warning and runs the rest; CI (CI=true) has
// them all, so there a missing one fails the test instead of letting it pass unrun.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>

#include <catch2/catch.hpp>

namespace cr::test {

// Whether the calling test can run: true when `present`; else FAILs under CI=true, and
// otherwise WARNs "skipped: <what> ..." and returns false (the caller returns).
inline bool available_or_skip(bool present, const std::string& what) {
  if (present) return true;
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") FAIL(what << " is missing, and CI must have it");
  WARN("skipped: " << what << " is missing");
  return false;
}

// Whether every file exists, reported as available_or_skip does for the first one that does not.
inline bool shared_data_present(std::initializer_list<std::filesystem::path> files) {
  for (const auto& file : files) {
    if (!available_or_skip(std::filesystem::exists(file), file.string())) return false;
  }
  return true;
}

}  // namespace cr::test
