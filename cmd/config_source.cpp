#include "cmd/config_source.h"

#include "cmd/quickstart_config.h"
#include "core/base/log.h"

namespace cr {

Config load_command_config(const ConfigOptions& options) {
  if (options.config_path) return load_config_file(*options.config_path, options.overrides);
  print0("no --config given: using the built-in quickstart config (configs/quickstart.yaml)");
  return load_config_text(kQuickstartConfig, "built-in configs/quickstart.yaml", options.overrides);
}

}  // namespace cr
