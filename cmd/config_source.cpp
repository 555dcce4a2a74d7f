#include "cmd/config_source.h"

#include "cmd/quickstart_config.h"
#include "core/base/log.h"
#include "core/data/shard_tokenizer.h"

namespace cr {

Config load_command_config(const ConfigOptions& options, bool announce) {
  Config config;
  if (options.config_path) {
    config = load_config_file(*options.config_path, options.overrides);
  } else {
    if (announce) print0("no --config given: using the built-in quickstart config (configs/quickstart.yaml)");
    // As if read from configs/quickstart.yaml: its paths are the repository's, seen from configs/.
    config = load_config_text(kQuickstartConfig, "built-in configs/quickstart.yaml", options.overrides, "configs");
  }
  // Token shards say which tokenizer made them; the run directory's config.yaml then records it.
  const std::string note = adopt_shard_tokenizer(config.data);
  if (announce && !note.empty()) print0("note: {}", note);
  return config;
}

}  // namespace cr
