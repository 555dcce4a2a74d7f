#include "core/base/strings.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "core/base/error.h"

namespace cr {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  // The distance costs |word| x |candidate|: a megabyte word is compared by its start.
  constexpr size_t kCompared = 256;
  const std::string compared = word.substr(0, kCompared);
  std::string best;
  size_t best_distance = static_cast<size_t>(-1);
  for (const auto& candidate : candidates) {
    const size_t d = edit_distance(compared, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

std::string shortened(const std::string& text, size_t limit) {
  if (text.size() <= limit) return text;
  const size_t half = limit / 2;
  return fmt::format("{}...({} bytes)...{}", text.substr(0, half), text.size(), text.substr(text.size() - half));
}

std::string with_thousands(long long value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string human_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 5) {
    bytes /= 1024.0;
    ++unit;
  }
  char buffer[32];
  if (unit == 0) {
    std::snprintf(buffer, sizeof buffer, "%.0f %s", bytes, units[unit]);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.2f %s", bytes, units[unit]);
  }
  return buffer;
}

int64_t parse_byte_size(const std::string& text, const std::string& option) {
  size_t end = 0;
  double value = 0;
  try {
    value = std::stod(text, &end);
  } catch (const std::exception&) {
    fail("{}: '{}' is not a size (e.g. 5GB, 500MB, 2GiB)", option, text);
  }
  std::string unit = text.substr(end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::pair<const char*, double> units[] = {
      {"", 1},          {"B", 1},           {"KB", 1e3},           {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12},     {"KIB", 1024.0},    {"MIB", 1048576.0},    {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  for (const auto& [name, scale] : units) {
    if (unit == name) {
      const double bytes = std::floor(value * scale);
      if (!(bytes >= 1)) fail("{}: '{}' must be at least one byte", option, text);
      return static_cast<int64_t>(bytes);
    }
  }
  fail("{}: '{}' has an unknown unit '{}' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", option, text, text.substr(end));
}

}  // namespace cr
