#include "cmd/mpirun_messages.h"

#include <regex>

#include <fmt/format.h>

namespace cr {
namespace {

bool is_rule(const std::string& text) {
  return text.size() >= 20 && text.find_first_not_of('-') == std::string::npos;
}

bool contains(const std::vector<std::string>& lines, const char* phrase) {
  for (const auto& line : lines) {
    if (line.find(phrase) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> MpirunMessages::line(const std::string& text) {
  if (is_rule(text)) {
    if (!in_box_) {
      in_box_ = true;
      return {};
    }
    return close_box();
  }
  if (in_box_) {
    box_.push_back(text);
    return {};
  }
  // Printed when the launcher asks the ranks to stop (SIGUSR1), which it says itself.
  if (text.rfind("mpirun: Forwarding signal", 0) == 0) return {};
  return {text};
}

std::vector<std::string> MpirunMessages::close_box() {
  in_box_ = false;
  std::vector<std::string> box;
  box.swap(box_);
  std::string joined;
  for (const auto& line : box) joined += line + " ";
  static const std::regex killed(
      R"(process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+) \(([^)]*)\))");
  std::smatch match;
  if (std::regex_search(joined, match, killed)) {
    return {fmt::format("error: rank {} (on {}) was killed by signal {} ({}), so the job stopped; a rank killed "
                        "without a message of its own was often ended by the kernel's out-of-memory killer "
                        "(see `dmesg`) or by the batch system",
                        match[1].str(), match[2].str(), match[3].str(), match[4].str())};
  }
  // A rank that fails prints its own error first; these say only that the job was ended for it.
  if (contains(box, "MPI_ABORT was invoked") || contains(box, "a non-zero exit code")) {
    return {};
  }
  static const std::regex exited(R"(exited with non-zero status.*Process name: \[\[\d+,\d+\],(\d+)\].*Exit code: +(\d+))");
  if (std::regex_search(joined, match, exited)) {
    // 130 is a rank that stopped on request and said so.
    if (match[2].str() == "130") return {};
    return {fmt::format("error: rank {} exited with status {}, so the job stopped", match[1].str(), match[2].str())};
  }
  std::vector<std::string> out;
  out.push_back(std::string(74, '-'));
  out.insert(out.end(), box.begin(), box.end());
  out.push_back(std::string(74, '-'));
  return out;
}

std::vector<std::string> MpirunMessages::finish() {
  if (!in_box_) return {};
  std::vector<std::string> out;
  out.push_back(std::string(74, '-'));
  out.insert(out.end(), box_.begin(), box_.end());
  in_box_ = false;
  box_.clear();
  return out;
}

}  // namespace cr
