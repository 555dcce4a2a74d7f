// Console output: every message meant for the user goes through these helpers, so that in a
// multi-rank job only rank 0 prints (errors print from every rank, tagged with the rank).
#pragma once

#include <string>

#include <fmt/format.h>

namespace cr {

// The rank of this process and whether it prints; set once by the runtime at start-up.
void set_log_rank(int rank, int world_size);
int log_rank();
int log_world_size();
// Sends rank-0 information lines to stderr, leaving stdout to machine-readable output.
void set_info_to_stderr(bool to_stderr);
// Also appends every line this process prints through these helpers to `path`, each with its
// local time ("[2026-11-29 21:40:01] "); "" stops. The run directory's train.log.
void set_log_file(const std::string& path);

void print0_line(const std::string& line);  // stdout, rank 0 only
void warn0_line(const std::string& line);   // stderr, rank 0 only, prefixed "warning: "
void error_line(const std::string& line);   // stderr, every rank, prefixed with the rank

template <typename... Args>
void print0(fmt::format_string<Args...> format, Args&&... args) {
  print0_line(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void warn0(fmt::format_string<Args...> format, Args&&... args) {
  warn0_line(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace cr
