// Where a command's config comes from: a file, or the built-in quickstart, plus --set overrides;
// token shards' tokenizer record (core/data/shard_tokenizer.h) fills data.tokenizer.
#pragma once

#include "cmd/commands.h"
#include "core/config/config.h"

namespace cr {

Config load_command_config(const ConfigOptions& options);

}  // namespace cr
