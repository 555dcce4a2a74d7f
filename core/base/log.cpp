#include "core/base/log.h"

#include <cstdio>
#include <ctime>

#include "core/base/strings.h"

namespace cr {
namespace {
int g_rank = 0;
int g_world_size = 1;
bool g_info_to_stderr = false;
std::FILE* g_log_file = nullptr;

void log_to_file(const char* prefix, const std::string& line) {
  if (g_log_file == nullptr) return;
  const std::time_t now = std::time(nullptr);
  std::tm local {};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  std::fprintf(g_log_file, "[%s] %s%s\n", stamp, prefix, line.c_str());
  std::fflush(g_log_file);
}
}  // namespace

void set_log_file(const std::string& path) {
  if (g_log_file != nullptr) std::fclose(g_log_file);
  g_log_file = path.empty() ? nullptr : std::fopen(path.c_str(), "a");
}

void set_log_rank(int rank, int world_size) {
  g_rank = rank;
  g_world_size = world_size;
}

int log_rank() { return g_rank; }
int log_world_size() { return g_world_size; }

void set_info_to_stderr(bool to_stderr) { g_info_to_stderr = to_stderr; }

void print0_line(const std::string& line) {
  if (g_rank != 0) return;
  std::FILE* out = g_info_to_stderr ? stderr : stdout;
  std::fwrite(line.data(), 1, line.size(), out);
  std::fputc('\n', out);
  std::fflush(out);
  log_to_file("", line);
}

void warn0_line(const std::string& line) {
  if (g_rank != 0) return;
  std::fprintf(stderr, "warning: %s\n", line.c_str());
  log_to_file("warning: ", line);
}

void error_line(const std::string& line) {
  // Messages quote users' paths and values, which can be megabytes long.
  constexpr size_t kMaxErrorBytes = 4096;
  const std::string text = shortened(line, kMaxErrorBytes);
  if (g_world_size > 1) {
    std::fprintf(stderr, "error: [rank %d] %s\n", g_rank, text.c_str());
  } else {
    std::fprintf(stderr, "error: %s\n", text.c_str());
  }
  std::fflush(stderr);
  log_to_file("error: ", text);
}

}  // namespace cr
