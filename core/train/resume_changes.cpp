#include "core/train/resume_changes.h"

#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/strings.h"
#include "core/train/model_factory.h"

namespace cr {
namespace {

bool invocation_key(const std::string& path) {
  return starts_with(path, "runtime.") || starts_with(path, "checkpoint.") || path == "model.init_from";
}

}  // namespace

std::vector<std::string> resume_config_changes(const Config& recorded, const Config& current,
                                               const std::string& checkpoint_dir) {
  const auto before = model_identity(model_spec_from_config(recorded.model));
  const auto after = model_identity(model_spec_from_config(current.model));
  std::vector<std::string> model_differences;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i].second != after[i].second) {
      model_differences.push_back(
          fmt::format("{} {} (checkpoint) vs {} (now)", before[i].first, before[i].second, after[i].second));
    }
  }
  std::vector<std::string> applied, model_keys;
  for (const ConfigKey& key : config_keys()) {
    if (invocation_key(key.path)) continue;
    const std::string was = config_value_text(recorded, key.path), now = config_value_text(current, key.path);
    if (was == now) continue;
    const std::string change = fmt::format("{}: {} -> {}", key.path, was, now);
    if (starts_with(key.path, "model.") && key.path != "model.dropout") {
      model_keys.push_back(change);
    } else {
      applied.push_back(change);
    }
  }
  if (!model_differences.empty()) {
    fail("checkpoint {} holds another model: {} ({}). Resuming needs the same architecture and dimensions; to start "
         "a new run from its weights, set model.init_from to it in a new runtime.run_dir",
         checkpoint_dir, fmt::join(model_differences, ", "), fmt::join(model_keys, "; "));
  }
  return applied;
}

std::optional<Config> recorded_config(const std::string& checkpoint_dir) {
  const std::string path = (std::filesystem::path(checkpoint_dir) / "config.yaml").string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    warn0("checkpoint {} has no config.yaml: resuming checks only that its tensors fit the model", checkpoint_dir);
    return std::nullopt;
  }
  try {
    return load_config_file(path);
  } catch (const ConfigError& e) {
    warn0("cannot compare with the config checkpoint {} was trained with ({}): resuming checks only that its "
          "tensors fit the model", checkpoint_dir, e.what());
    return std::nullopt;
  }
}

}  // namespace cr
