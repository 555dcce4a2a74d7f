// How a fuzz case is judged: it loads, or it fails with a cr::Error whose message names what is
// wrong (a config key, a file). Anything else (another exception type, a signal, a hang) is a
// defect. Counts per input kind are printed at the end of each test case.
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "isolate.h"

namespace cr::fuzz {

// A few hundred bytes of an input, control and non-ASCII bytes escaped, for failure reports.
inline std::string excerpt(const std::string& bytes, size_t limit = 300) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7F) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (bytes.size() > limit) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

inline bool names_any(const std::string& message, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (!name.empty() && message.find(name) != std::string::npos) return true;
  }
  return false;
}

class Tally {
 public:
  explicit Tally(std::string kind) : kind_(std::move(kind)) {}
  Tally(const Tally&) = delete;
  Tally& operator=(const Tally&) = delete;

  // Judges one case: a clean outcome, and an error message that contains one of `names`.
  void check(const std::string& case_name, const std::string& input, const Outcome& outcome,
             const std::vector<std::string>& names) {
    ++cases_;
    ++by_kind_[kind_name(outcome.kind)];
    const bool unnamed = outcome.kind == Outcome::Kind::ProjectError && !names_any(outcome.detail, names);
    if (!outcome.clean() || unnamed) ++defects_;
    INFO(kind_ << " case: " << case_name);
    INFO("input: " << excerpt(input));
    INFO("outcome: " << kind_name(outcome.kind) << (outcome.detail.empty() ? "" : ": ") << excerpt(outcome.detail, 600));
    CHECK(outcome.clean());
    if (outcome.kind == Outcome::Kind::ProjectError) {
      INFO("the message should name one of: " << excerpt(join(names), 600));
      CHECK(!unnamed);
    }
  }

  int cases() const { return cases_; }

  // One line per input kind, e.g. "fuzz configs: 2900 cases (2500 cr::Error, 400 loaded), 0 defects".
  void print() const {
    std::string counts;
    for (const auto& [kind, count] : by_kind_) counts += (counts.empty() ? "" : ", ") + std::to_string(count) + " " + kind;
    std::printf("fuzz %s: %d cases (%s), %d defective\n", kind_.c_str(), cases_, counts.c_str(), defects_);
    std::fflush(stdout);
  }

 private:
  static std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
    return out;
  }

  std::string kind_;
  int cases_ = 0;
  int defects_ = 0;
  std::map<std::string, int> by_kind_;
};

}  // namespace cr::fuzz
