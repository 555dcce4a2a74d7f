// Where a command's config comes from: a file, or the built-in quickstart, plus --set overrides.
#pragma once

#include "cmd/commands.h"
#include "core/config/config.h"

namespace cr {

Config load_command_config(const ConfigOptions& options);

}  // namespace cr
