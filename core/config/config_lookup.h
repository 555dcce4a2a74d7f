// What config.cpp (reading) and config_text.cpp (writing) share: finding keys in the schema
// tables, reading a field through its accessor, and the text of a value rule's bounds.
#pragma once

#include <filesystem>
#include <string>

#include "core/config/config.h"

namespace cr {

std::string section_of(const std::string& path);       // "train" of "train.steps"
std::string name_in_section(const std::string& path);  // "steps" of "train.steps"
const ConfigKey* find_key(const std::string& path);    // null when the schema has no such key

// The accessors serve both reading and writing; reading through them leaves the config as is.
template <typename T>
const T& field_value(ConfigFieldAccess<T> access, const Config& config) {
  return access(const_cast<Config&>(config));
}

// Makes every path key's relative paths absolute under `directory` (config_paths.cpp).
void resolve_config_paths(Config& config, const std::filesystem::path& directory);

// "in [1, 8]", ">= 0", ...; "" without bounds.
std::string bounds_text(const ConfigValueRule& rule);

}  // namespace cr
