// Path keys: a relative path in a config file means a path next to that file, so a config runs
// the same from any working directory; a relative path given with --set means one in the working
// directory, as on any command line. Both become absolute, so that the run directory's resolved
// config.yaml loads again from anywhere.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "core/config/config_lookup.h"

namespace cr {
namespace {

std::string resolved(const std::string& value, const ConfigValueRule& rule, const std::filesystem::path& base) {
  const auto& words = rule.path_keywords;
  if (std::find(words.begin(), words.end(), value) != words.end()) return value;
  const std::filesystem::path path(value);
  if (path.is_absolute()) return value;
  return (base / path).lexically_normal().string();
}

void resolve(std::string& value, const ConfigValueRule& rule, const std::filesystem::path& base) {
  value = resolved(value, rule, base);
}

void resolve(std::optional<std::string>& value, const ConfigValueRule& rule, const std::filesystem::path& base) {
  if (value) resolve(*value, rule, base);
}

void resolve(std::vector<std::string>& values, const ConfigValueRule& rule, const std::filesystem::path& base) {
  for (std::string& value : values) resolve(value, rule, base);
}

}  // namespace

void resolve_config_paths(Config& config, const std::filesystem::path& directory) {
  // "" is the directory of a file named without one: the working directory.
  const std::filesystem::path base =
      directory.empty() ? std::filesystem::current_path() : std::filesystem::absolute(directory);
  for (const ConfigKey& key : config_keys()) {
    if (!key.rule.path) continue;
    std::visit(
        [&](auto access) {
          auto& value = access(config);
          using Value = std::remove_reference_t<decltype(value)>;
          if constexpr (std::is_same_v<Value, std::string> || std::is_same_v<Value, std::optional<std::string>> ||
                        std::is_same_v<Value, std::vector<std::string>>) {
            resolve(value, key.rule, base);
          }
        },
        key.field);
  }
}

}  // namespace cr
