// Where a command's config comes from: a file, or the built-in quickstart, plus --set overrides;
// token shards' tokenizer record (core/data/shard_tokenizer.h) fills data.tokenizer.
#pragma once

#include "cmd/commands.h"
#include "core/config/config.h"

namespace cr {

// `announce`: print where the config came from and what was filled in (false for the check made
// before relaunching under mpirun, whose rank 0 says it again).
Config load_command_config(const ConfigOptions& options, bool announce = true);

}  // namespace cr
