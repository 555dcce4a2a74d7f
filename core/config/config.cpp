// The machinery behind config.h: YAML walking, type and range checks, --set overrides and
// validation, driven by the tables in config_schema.cpp (config_text.cpp writes configs out).
#include "core/config/config.h"
#include "core/config/config_lookup.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string_view>
#include <type_traits>

#include "core/base/error.h"
#include "core/base/strings.h"

namespace cr {

std::string section_of(const std::string& path) { return path.substr(0, path.find('.')); }
std::string name_in_section(const std::string& path) { return path.substr(path.find('.') + 1); }

const ConfigKey* find_key(const std::string& path) {
  for (const ConfigKey& key : config_keys()) {
    if (key.path == path) return &key;
  }
  return nullptr;
}

std::string bounds_text(const ConfigValueRule& rule) {
  if (rule.min && rule.max) {
    return fmt::format("in {}{}, {}{}", rule.min_exclusive ? "(" : "[", *rule.min, *rule.max,
                       rule.max_exclusive ? ")" : "]");
  }
  if (rule.min) return fmt::format("{} {}", rule.min_exclusive ? ">" : ">=", *rule.min);
  if (rule.max) return fmt::format("{} {}", rule.max_exclusive ? "<" : "<=", *rule.max);
  return "";
}

namespace {

// ---- Schema look-ups ----


// The key a bare value at `path` stands for (parallel.pipeline: 4), if any.
const ConfigKey* shorthand_key(const std::string& path) {
  for (const auto& [parent, key] : config_shorthands()) {
    if (parent == path) return find_key(key);
  }
  return nullptr;
}

// Keys nested one level deeper (parallel.sequence.mode) are written as a mapping under their parent.
bool has_keys_under(const std::string& path) {
  for (const ConfigKey& key : config_keys()) {
    if (key.path.rfind(path + ".", 0) == 0) return true;
  }
  return false;
}

bool is_section(const std::string& name) {
  for (const ConfigSection& section : config_sections()) {
    if (section.name == name) return true;
  }
  return false;
}

std::string unknown_key_message(const std::string& path) {
  std::vector<std::string> paths;
  for (const ConfigKey& key : config_keys()) paths.push_back(key.path);
  return fmt::format("unknown key '{}'; did you mean '{}'?", shortened(path), closest_match(path, paths));
}

std::string unknown_section_message(const std::string& name) {
  std::vector<std::string> names;
  for (const ConfigSection& section : config_sections()) names.push_back(section.name);
  return fmt::format("unknown section '{}'; did you mean '{}'?", shortened(name), closest_match(name, names));
}


// ---- Value rules ----

// What is wrong with one value under `rule`; "" when nothing is.
template <typename Number>
std::string number_problem(const ConfigValueRule& rule, Number value) {
  const double x = static_cast<double>(value);
  // Written as negations so that NaN counts as out of range.
  const bool too_low = rule.min && (rule.min_exclusive ? !(x > *rule.min) : !(x >= *rule.min));
  const bool too_high = rule.max && (rule.max_exclusive ? !(x < *rule.max) : !(x <= *rule.max));
  if (!too_low && !too_high) return "";
  return fmt::format("must be {}, got {}", bounds_text(rule), value);
}

std::string problem_of(const ConfigValueRule& rule, int64_t value) {
  return number_problem(rule, value);
}
std::string problem_of(const ConfigValueRule& rule, double value) {
  return number_problem(rule, value);
}
std::string problem_of(const ConfigValueRule&, bool) { return ""; }

std::string problem_of(const ConfigValueRule& rule, const std::string& value) {
  if (value.empty()) return "must not be empty";
  if (rule.choices.empty()) return "";
  for (const std::string& choice : rule.choices) {
    if (value == choice) return "";
  }
  return fmt::format("'{}' is not one of {}", shortened(value), fmt::join(rule.choices, ", "));
}

template <typename T>
std::string problem_of(const ConfigValueRule& rule, const std::optional<T>& value) {
  return value ? problem_of(rule, *value) : "";
}

struct Violation {
  std::optional<size_t> item;  // the list item at fault
  std::string problem;
};

template <typename T>
std::optional<Violation> violation_of(const ConfigValueRule& rule, const T& value) {
  std::string problem = problem_of(rule, value);
  if (problem.empty()) return std::nullopt;
  return Violation{std::nullopt, std::move(problem)};
}

template <typename T>
std::optional<Violation> violation_of(const ConfigValueRule& rule, const std::vector<T>& items) {
  if (rule.length != 0 && items.size() != rule.length) {
    return Violation{std::nullopt,
                     fmt::format("must have {} items, got {}", rule.length, items.size())};
  }
  for (size_t i = 0; i < items.size(); ++i) {
    std::string problem = problem_of(rule, items[i]);
    if (!problem.empty()) return Violation{i, std::move(problem)};
  }
  return std::nullopt;
}

std::optional<Violation> find_violation(const ConfigKey& key, const Config& config) {
  return std::visit(
      [&](auto access) { return violation_of(key.rule, field_value(access, config)); }, key.field);
}

std::string item_path(const std::string& path, std::optional<size_t> item) {
  return item ? fmt::format("{}[{}]", path, *item) : path;
}

std::string with_source(const std::string& source, const std::string& message) {
  return source.empty() ? message : source + ": " + message;
}

// ---- Reading YAML ----

// "!!str" as written, rather than the resolved "tag:yaml.org,2002:str".
std::string yaml_tag_text(const std::string& tag) {
  const std::string core = "tag:yaml.org,2002:";
  return tag.rfind(core, 0) == 0 ? "!!" + tag.substr(core.size()) : tag;
}

// yaml-cpp's tag for a plain (unquoted, untagged) scalar; a quoted one has "!".
constexpr const char* kPlainTag = "?";

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) {
    const std::string text = "'" + shortened(node.Scalar()) + "'";
    if (node.Tag() == "!") return "the quoted string " + text;
    if (node.Tag() != kPlainTag) return fmt::format("{} tagged {}", text, yaml_tag_text(node.Tag()));
    return text;
  }
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "null";
}

// Where values were written, for messages: a position in a config file, or a --set flag.
struct Origin {
  std::optional<std::string> file;  // nullopt: a --set override
  std::string_view text;            // the file's or the flag's YAML

  std::string prefix(const YAML::Mark& mark) const {
    if (!file) return "--set ";
    return fmt::format("{}:{}:{}: ", *file, mark.line + 1, mark.column + 1);
  }

  // The source from `mark` to the end of its line; yaml-cpp counts columns in characters.
  std::optional<std::string_view> line_from(const YAML::Mark& mark) const {
    size_t begin = 0;
    for (int line = 0; line < mark.line; ++line) {
      begin = text.find('\n', begin);
      if (begin == std::string_view::npos) return std::nullopt;
      ++begin;
    }
    const size_t end = std::min(text.find('\n', begin), text.size());
    size_t at = begin;
    for (int column = 0; column < mark.column && at < end; ++column) {
      do ++at;
      while (at < end && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80);
    }
    return text.substr(at, end - at);
  }
};

// Whether the quoted scalar at the start of `line` ends on it ('' and \" are escapes).
bool closes_on_line(std::string_view line) {
  const char quote = line.front();
  for (size_t i = 1; i < line.size(); ++i) {
    if (quote == '"' && line[i] == '\\') {
      ++i;
    } else if (line[i] == quote) {
      if (quote == '\'' && i + 1 < line.size() && line[i + 1] == '\'') {
        ++i;
      } else {
        return true;
      }
    }
  }
  return false;
}

// Reads one key's YAML value into its field; errors name the key and where the value is.
class ValueReader {
 public:
  ValueReader(const Origin& origin, std::string path, YAML::Mark key_mark)
      : origin_(origin), path_(std::move(path)), key_mark_(key_mark) {}

  void read(const YAML::Node& node, int64_t& out, std::optional<size_t> item = {}) const {
    if (!is_plain(node) || !YAML::convert<int64_t>::decode(node, out)) {
      expected(node, "an integer", item);
    }
  }

  void read(const YAML::Node& node, double& out, std::optional<size_t> item = {}) const {
    if (!is_plain(node) || !YAML::convert<double>::decode(node, out)) {
      expected(node, "a number", item);
    }
    if (!std::isfinite(out)) expected(node, "a finite number", item);
  }

  void read(const YAML::Node& node, bool& out, std::optional<size_t> item = {}) const {
    if (!is_plain(node) || !YAML::convert<bool>::decode(node, out)) {
      expected(node, "true or false", item);
    }
  }

  void read(const YAML::Node& node, std::string& out, std::optional<size_t> item = {}) const {
    if (!node.IsScalar()) expected(node, "a string", item);
    check_quote_closed(node, item);
    out = node.Scalar();
  }

  template <typename T>
  void read(const YAML::Node& node, std::optional<T>& out) const {
    if (node.IsNull()) {
      out.reset();
      return;
    }
    read(node, out.emplace());
  }

  // A single string stands for a list of one.
  void read(const YAML::Node& node, std::vector<std::string>& out) const {
    out.clear();
    if (node.IsNull()) return;
    if (node.IsScalar()) {
      read(node, out.emplace_back());
      return;
    }
    if (!node.IsSequence()) expected(node, "a string or a list of strings");
    read_items(node, out);
  }

  // null: the empty list.
  void read(const YAML::Node& node, std::vector<int64_t>& out) const {
    out.clear();
    if (node.IsNull()) return;
    if (!node.IsSequence()) expected(node, "a list of integers");
    read_items(node, out);
  }

  void read(const YAML::Node& node, std::vector<double>& out) const {
    if (!node.IsSequence()) expected(node, "a list of numbers");
    out.clear();
    read_items(node, out);
  }

  [[noreturn]] void fail(const YAML::Node& node, const std::string& problem,
                         std::optional<size_t> item = {}) const {
    throw ConfigError(
        fmt::format("{}{}: {}", origin_.prefix(mark_of(node)), item_path(path_, item), problem));
  }

 private:
  // Numbers and booleans are written bare: "5" and !!str 5 are strings, whatever they spell.
  static bool is_plain(const YAML::Node& node) { return node.IsScalar() && node.Tag() == kPlainTag; }

  // YAML lets a quoted scalar run over several lines, so a missing closing quote swallows the
  // keys below it into one value. No config value spans lines: a quote must close on its own.
  void check_quote_closed(const YAML::Node& node, std::optional<size_t> item) const {
    if (node.Tag() != "!" || node.Mark().is_null()) return;
    const std::optional<std::string_view> rest = origin_.line_from(node.Mark());
    if (!rest || rest->empty() || (rest->front() != '\'' && rest->front() != '"')) return;
    if (!closes_on_line(*rest)) {
      fail(node, fmt::format("the value's opening {} quote is not closed on its line", rest->front()), item);
    }
  }

  template <typename T>
  void read_items(const YAML::Node& node, std::vector<T>& out) const {
    out.resize(node.size());
    for (size_t i = 0; i < node.size(); ++i) read(node[i], out[i], i);
  }

  [[noreturn]] void expected(const YAML::Node& node, const std::string& what,
                             std::optional<size_t> item = {}) const {
    fail(node, fmt::format("expected {}, got {}", what, describe(node)), item);
  }

  // An empty value ("steps:") has no position of its own: point at its key instead.
  YAML::Mark mark_of(const YAML::Node& node) const {
    const bool empty_value = node.IsNull() && node.Tag().empty();
    return node.Mark().is_null() || empty_value ? key_mark_ : node.Mark();
  }

  const Origin& origin_;
  std::string path_;
  YAML::Mark key_mark_;
};

// Type checks while reading, then the key's rule on the value read.
void assign(const ConfigKey& key, const YAML::Node& node, const ValueReader& reader,
            Config& config) {
  std::visit([&](auto access) { reader.read(node, access(config)); }, key.field);
  if (auto violation = find_violation(key, config)) {
    if (violation->item && node.IsSequence()) {
      reader.fail(node[*violation->item], violation->problem, violation->item);
    }
    reader.fail(node, violation->problem);
  }
}

std::string key_name(const YAML::Node& key, const Origin& origin, const char* what) {
  if (!key.IsScalar()) {
    throw ConfigError(
        fmt::format("{}expected {} name, got {}", origin.prefix(key.Mark()), what, describe(key)));
  }
  return key.Scalar();
}

void apply_section(const std::string& section, const YAML::Node& body, const Origin& origin,
                   Config& config) {
  std::set<std::string> seen;
  for (const auto& entry : body) {
    const YAML::Mark key_mark = entry.first.Mark();
    const std::string path = section + "." + key_name(entry.first, origin, "a key");
    const ConfigKey* key = find_key(path);
    if (!seen.insert(path).second) {
      throw ConfigError(fmt::format("{}duplicate key '{}'", origin.prefix(key_mark), path));
    }
    if (!key && entry.second.IsMap() && has_keys_under(path)) {
      apply_section(path, entry.second, origin, config);
      continue;
    }
    if (!key) key = shorthand_key(path);
    if (!key) throw ConfigError(origin.prefix(key_mark) + unknown_key_message(path));
    assign(*key, entry.second, ValueReader(origin, path, key_mark), config);
  }
}

void apply_document(const YAML::Node& root, const Origin& origin, Config& config) {
  if (root.IsNull()) return;
  if (!root.IsMap()) {
    throw ConfigError(fmt::format("{}expected a mapping of sections (model:, data:, ...), got {}",
                                  origin.prefix(root.Mark()), describe(root)));
  }
  std::set<std::string> seen;
  for (const auto& entry : root) {
    const YAML::Mark mark = entry.first.Mark();
    const std::string section = key_name(entry.first, origin, "a section");
    if (!is_section(section)) {
      throw ConfigError(origin.prefix(mark) + unknown_section_message(section));
    }
    if (!seen.insert(section).second) {
      throw ConfigError(fmt::format("{}duplicate section '{}'", origin.prefix(mark), section));
    }
    const YAML::Node& body = entry.second;
    if (body.IsNull()) continue;
    if (!body.IsMap()) {
      throw ConfigError(fmt::format("{}{}: expected a mapping of keys, got {}",
                                    origin.prefix(body.Mark()), section, describe(body)));
    }
    apply_section(section, body, origin, config);
  }
}

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

void apply_override(const std::string& assignment, Config& config) {
  const size_t equals = assignment.find('=');
  const std::string path = trim(assignment.substr(0, equals));
  if (equals == std::string::npos || path.empty()) {
    throw ConfigError(
        fmt::format("--set '{}': expected key.path=value, e.g. train.steps=100", shortened(assignment)));
  }
  const ConfigKey* key = find_key(path);
  if (!key) key = shorthand_key(path);
  if (!key) throw ConfigError(fmt::format("--set {}: {}", shortened(path), unknown_key_message(path)));
  const std::string text = assignment.substr(equals + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("--set {}: cannot read '{}' as YAML: {}", path, shortened(text), e.msg));
  }
  const Origin flag{std::nullopt, text};
  assign(*key, value, ValueReader(flag, path, YAML::Mark::null_mark()), config);
}

// An unclosed quote makes YAML read on until the next quote, so the parser reports a later line
// (or nothing): the first "key: 'value" line whose quote does not close, before `last_line`.
std::optional<std::string> unclosed_quote(const std::string& yaml, const std::string& source, int last_line) {
  std::string section;
  size_t begin = 0;
  for (int line = 0; line <= last_line && begin < yaml.size(); ++line) {
    const size_t end = std::min(yaml.find('\n', begin), yaml.size());
    const std::string_view text(yaml.data() + begin, end - begin);
    begin = end + 1;
    const size_t first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos || text[first] == '#') continue;
    const size_t colon = text.find(':', first);
    if (colon == std::string_view::npos) continue;
    const std::string key(text.substr(first, colon - first));
    if (first == 0) section = key;
    const size_t value = text.find_first_not_of(" \t", colon + 1);
    if (value == std::string_view::npos || (text[value] != '\'' && text[value] != '"')) continue;
    if (closes_on_line(text.substr(value))) continue;
    return fmt::format("{}:{}:{}: {}{}: the value's opening {} quote is not closed on its line", source, line + 1,
                       value + 1, first == 0 ? "" : section + ".", shortened(key), text[value]);
  }
  return std::nullopt;
}

// A config is one YAML document: a second one ("---" and more keys) would otherwise be ignored.
YAML::Node parse_yaml(const std::string& yaml, const std::string& source) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(yaml);
  } catch (const YAML::ParserException& e) {
    if (auto unclosed = unclosed_quote(yaml, source, e.mark.line)) throw ConfigError(*unclosed);
    throw ConfigError(
        fmt::format("{}:{}:{}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (documents.size() > 1) {
    const YAML::Mark mark = documents[1].Mark();
    throw ConfigError(fmt::format("{}:{}: a second YAML document starts here (after a '---' line); a config is one document",
                                  source, mark.is_null() ? 0 : mark.line + 1));
  }
  return documents.empty() ? YAML::Node() : documents.front();
}

}  // namespace

void validate_config(const Config& config) {
  for (const ConfigKey& key : config_keys()) {
    if (auto violation = find_violation(key, config)) {
      throw ConfigError(with_source(
          config.source, item_path(key.path, violation->item) + ": " + violation->problem));
    }
  }
  for (const ConfigRule& rule : config_rules()) {
    const std::string problem = rule.violation(config);
    if (!problem.empty()) throw ConfigError(with_source(config.source, problem));
  }
}

namespace {

// Whether the document has a model.preset key (null or not). By iteration: indexing a const
// node by a missing key gives an invalid node that throws when asked anything.
bool names_model_preset(const YAML::Node& root) {
  if (!root.IsMap()) return false;
  for (const auto& section : root) {
    if (section.first.Scalar() != "model" || !section.second.IsMap()) continue;
    for (const auto& key : section.second) {
      if (key.first.Scalar() == "preset") return true;
    }
  }
  return false;
}

}  // namespace

Config load_config_text(const std::string& yaml, const std::string& source_name,
                        const std::vector<std::string>& overrides, const std::optional<std::string>& directory) {
  Config config;
  config.source = source_name;
  const YAML::Node root = parse_yaml(yaml, source_name);
  apply_document(root, Origin{source_name, yaml}, config);
  if (directory) resolve_config_paths(config, *directory);
  for (const std::string& assignment : overrides) apply_override(assignment, config);
  if (directory) resolve_config_paths(config, std::filesystem::current_path());
  // A Hugging Face directory in model.init_from is the model (its config.json) unless a preset
  // is named, as from_pretrained takes it.
  const bool preset_named =
      names_model_preset(root) ||
      std::any_of(overrides.begin(), overrides.end(),
                  [](const std::string& assignment) { return trim(assignment).rfind("model.preset", 0) == 0; });
  std::error_code error;
  if (!preset_named && config.model.init_from &&
      std::filesystem::exists(std::filesystem::path(*config.model.init_from) / "config.json", error)) {
    config.model.preset.reset();
  }
  validate_config(config);
  return config;
}

Config load_config_file(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    throw ConfigError(fmt::format("config file '{}': not found", path));
  }
  if (std::filesystem::is_directory(path, error)) {
    throw ConfigError(fmt::format("config file '{}': is a directory", path));
  }
  // A device or a pipe would be read for ever; a real config is a few kilobytes.
  if (!std::filesystem::is_regular_file(path, error)) {
    throw ConfigError(fmt::format("config file '{}': not a regular file", path));
  }
  constexpr uintmax_t kMaxConfigBytes = 1 << 24;
  if (const uintmax_t size = std::filesystem::file_size(path, error); !error && size > kMaxConfigBytes) {
    throw ConfigError(fmt::format("config file '{}': {} bytes; a config is at most 16 MiB", path, size));
  }
  std::ifstream file(path, std::ios::binary);
  std::string text(std::istreambuf_iterator<char>(file), {});
  if (!file.is_open() || file.bad()) {
    throw ConfigError(fmt::format("config file '{}': cannot be read", path));
  }
  return load_config_text(text, path, overrides, std::filesystem::path(path).parent_path().string());
}

}  // namespace cr
