// `colossal-run convert-config FILE [-o OUT]`: a DeepSpeed JSON or Colossal-AI legacy config as ours.
#include <fstream>

#include "cmd/commands.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/config/foreign_config.h"

namespace cr {

int run_convert_config_command(const ConvertConfigOptions& options) {
  // Stdout is the config; what needs the user's eye goes to stderr.
  set_info_to_stderr(true);
  const ConvertedConfig converted = convert_config_file(options.input);
  if (options.output.empty()) {
    std::fputs(converted.yaml.c_str(), stdout);
  } else {
    std::ofstream out(options.output, std::ios::binary | std::ios::trunc);
    out << converted.yaml;
    out.close();
    if (!out) fail("{}: cannot write the converted config", options.output);
  }
  for (const std::string& line : converted.notes) print0_line("note: " + line);
  for (const std::string& line : converted.unmapped) print0_line("not mapped: " + line);
  if (!options.output.empty()) {
    print0("wrote {}: {} key(s) not mapped, listed above and at the end of the file", options.output,
           converted.unmapped.size());
  }
  return 0;
}

}  // namespace cr
