// How a fuzz case is judged: it loads, or it fails with a cr::Error whose message names what is
// wrong (a config key, a file). Anything else (another exception type, a signal, a hang) is a
// defect. Counts per input kind are printed when its cases are done.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
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

// The cases of one input kind: added with the input's loader and the names its error must
// contain, run in batches in child processes, judged, counted.
class Fuzzer {
 public:
  // The names an error message must contain (one of them), given how the case ended.
  using Names = std::function<std::vector<std::string>(const Outcome&)>;

  explicit Fuzzer(std::string kind) : kind_(std::move(kind)) {}
  Fuzzer(const Fuzzer&) = delete;
  Fuzzer& operator=(const Fuzzer&) = delete;

  // `body` runs later, in a child: it must own what it uses (capture by value). `cleanup`, a
  // case directory, is removed once the case has run.
  void add(std::string name, const std::string& input, Names names, std::function<void()> body,
           std::filesystem::path cleanup = {}) {
    pending_.push_back({std::move(name), excerpt(input), std::move(names), std::move(body), std::move(cleanup)});
    if (pending_.size() >= kBatch) run_pending();
  }
  void add(std::string name, const std::string& input, std::vector<std::string> names, std::function<void()> body,
           std::filesystem::path cleanup = {}) {
    add(std::move(name), input, [names = std::move(names)](const Outcome&) { return names; }, std::move(body),
        std::move(cleanup));
  }

  // Runs what is pending and prints one line of counts, e.g.
  // "fuzz configs: 2900 cases (2500 cr::Error, 400 loaded), 0 defective".
  void finish() {
    run_pending();
    std::string counts;
    for (const auto& [kind, count] : by_kind_) counts += (counts.empty() ? "" : ", ") + std::to_string(count) + " " + kind;
    std::printf("fuzz %s: %d cases (%s), %d defective\n", kind_.c_str(), cases_, counts.c_str(), defects_);
    std::fflush(stdout);
  }

 private:
  // Cases per batch: enough to spread the cost of a fork, few enough to keep their files small.
  static constexpr size_t kBatch = 200;

  struct Case {
    std::string name;
    std::string input;  // an excerpt, for reports
    Names names;
    std::function<void()> body;
    std::filesystem::path cleanup;
  };

  void run_pending() {
    std::vector<std::function<void()>> bodies;
    for (const auto& c : pending_) bodies.push_back(c.body);
    const std::vector<Outcome> outcomes = run_isolated(bodies);
    for (size_t i = 0; i < pending_.size(); ++i) {
      judge(pending_[i], outcomes[i]);
      if (!pending_[i].cleanup.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(pending_[i].cleanup, ignored);
      }
    }
    pending_.clear();
  }

  // A clean outcome, and an error message that names what the case expects.
  void judge(const Case& c, const Outcome& outcome) {
    ++cases_;
    ++by_kind_[kind_name(outcome.kind)];
    const std::vector<std::string> names = c.names(outcome);
    const bool unnamed = outcome.kind == Outcome::Kind::ProjectError && !names_any(outcome.detail, names);
    if (!outcome.clean() || unnamed) ++defects_;
    INFO(kind_ << " case: " << c.name);
    INFO("input: " << c.input);
    INFO("outcome: " << kind_name(outcome.kind) << (outcome.detail.empty() ? "" : ": ") << excerpt(outcome.detail, 600));
    CHECK(outcome.clean());
    if (outcome.kind == Outcome::Kind::ProjectError) {
      INFO("the message should name one of: " << excerpt(join(names), 600));
      CHECK(!unnamed);
    }
  }

  static std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
    return out;
  }

  std::string kind_;
  std::vector<Case> pending_;
  int cases_ = 0;
  int defects_ = 0;
  std::map<std::string, int> by_kind_;
};

}  // namespace cr::fuzz
