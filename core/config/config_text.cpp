// The config written out: the resolved dump (every key, loadable back), one key's value as the
// dump writes it, and the reference page docs/config.md, from the tables in config_schema.cpp.
#include <cmath>
#include <set>
#include <string>

#include <fmt/format.h>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/config/config_lookup.h"

namespace cr {
namespace {

// ---- Writing YAML ----

// Shortest text that reads back as the same double, always with a fraction or an exponent.
std::string number_text(double value) {
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

bool is_plain_scalar(const std::string& text) {
  static const std::set<std::string> null_words = {"null", "Null", "NULL"};
  if (text.empty() || null_words.count(text)) return false;
  const auto ordinary = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/';
  };
  if (!ordinary(text.front())) return false;
  for (char c : text) {
    if (!ordinary(c) && c != '-' && c != '+') return false;
  }
  return true;
}

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string yaml_text(int64_t value) { return std::to_string(value); }
std::string yaml_text(double value) { return number_text(value); }
std::string yaml_text(bool value) { return value ? "true" : "false"; }
std::string yaml_text(const std::string& value) {
  return is_plain_scalar(value) ? value : quoted(value);
}

template <typename T>
std::string yaml_text(const std::optional<T>& value) {
  return value ? yaml_text(*value) : "null";
}

template <typename T>
std::string yaml_text(const std::vector<T>& items) {
  std::vector<std::string> texts;
  for (const T& item : items) texts.push_back(yaml_text(item));
  return fmt::format("[{}]", fmt::join(texts, ", "));
}

std::string value_text(const ConfigKey& key, const Config& config) {
  return std::visit([&](auto access) { return yaml_text(field_value(access, config)); }, key.field);
}

// ---- Reference page ----

// Overloads on a null pointer of the field's type, which picks the name without a value.
const char* type_name(const int64_t*) { return "integer"; }
const char* type_name(const double*) { return "number"; }
const char* type_name(const bool*) { return "boolean"; }
const char* type_name(const std::string*) { return "string"; }

template <typename T>
std::string type_text(const ConfigValueRule& rule, const T*) {
  if (!rule.choices.empty()) {
    std::vector<std::string> codes;
    for (const std::string& choice : rule.choices) codes.push_back("`" + choice + "`");
    return fmt::format("one of {}", fmt::join(codes, ", "));
  }
  const std::string bounds = bounds_text(rule);
  const std::string name = rule.path ? "path" : type_name(static_cast<const T*>(nullptr));
  return bounds.empty() ? name : name + " " + bounds;
}

template <typename T>
std::string type_text(const ConfigValueRule& rule, const std::optional<T>*) {
  return type_text(rule, static_cast<const T*>(nullptr)) + " or null";
}

template <typename T>
std::string type_text(const ConfigValueRule& rule, const std::vector<T>*) {
  const std::string bounds = bounds_text(rule);
  const std::string name = rule.path ? "path" : type_name(static_cast<const T*>(nullptr));
  const std::string items = rule.length ? fmt::format("list of {} {}s", rule.length, name)
                                        : fmt::format("list of {}s", name);
  return bounds.empty() ? items : fmt::format("{}, each {}", items, bounds);
}

std::string type_text(const ConfigKey& key) {
  return std::visit(
      [&](auto access) {
        using Value = std::remove_reference_t<decltype(access(std::declval<Config&>()))>;
        return type_text(key.rule, static_cast<const Value*>(nullptr));
      },
      key.field);
}

std::string table_cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

constexpr const char* kReferenceIntro = R"(# Configuration reference

<!-- Generated from core/config/config_schema.cpp by config_reference_markdown(); do not edit. -->

A run is configured by one YAML file: a mapping of the sections below, each a mapping of
keys. Every key is optional and takes its default when absent; `null` means "not set" where a
key's type allows it.

Any key can be overridden on the command line with `--set section.key=value`, applied after
the file and checked the same way. The value is read as YAML, for example
`--set train.steps=500`, `--set optimizer.betas=[0.9,0.99]`, `--set model.preset=null` or
`--set data.train=shards/train_*.bin`.

A relative path (a key of type path) in a config file is relative to the file's directory, so
a config runs the same from any working directory; a relative path given with `--set` is
relative to the working directory, as on any command line. Both are made absolute when the
config is read: the resolved `config.yaml` in the run directory loads again from anywhere.

An unknown section or key is an error that names the closest valid one, so a misspelt key
never silently leaves its default in place. Errors give the file, line and column of the
offending value, or the `--set` key.
)";

}  // namespace

std::string dump_config(const Config& config) {
  std::string out;
  std::string section;
  for (const ConfigKey& key : config_keys()) {
    if (section_of(key.path) != section) {
      section = section_of(key.path);
      if (!out.empty()) out += '\n';
      out += section + ":\n";
    }
    out += fmt::format("  {}: {}\n", name_in_section(key.path), value_text(key, config));
  }
  return out;
}

std::string config_value_text(const Config& config, const std::string& path) {
  const ConfigKey* key = find_key(path);
  if (!key) fail("config_value_text: unknown key '{}'", path);
  return value_text(*key, config);
}

std::string config_reference_markdown() {
  const Config defaults{};
  std::string out = kReferenceIntro;
  for (const ConfigSection& section : config_sections()) {
    out += fmt::format("\n## {}\n\n{}\n\n", section.name, section.meaning);
    out += "| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
    for (const ConfigKey& key : config_keys()) {
      if (section_of(key.path) != section.name) continue;
      out += fmt::format("| `{}` | {} | `{}` | {} |\n", key.path, table_cell(type_text(key)),
                         table_cell(value_text(key, defaults)), table_cell(key.meaning));
    }
  }
  out += "\n## Rules across keys\n\nChecked after the file and every `--set` are applied.\n\n";
  for (const ConfigRule& rule : config_rules()) out += "- " + rule.description + "\n";
  return out;
}

}  // namespace cr
