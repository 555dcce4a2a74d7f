// `colossal-run generate`: continues a text prompt with a trained model.
#pragma once

#include <cstdint>
#include <string>

#include "cmd/commands.h"
#include "cmd/launch.h"

namespace cr {

struct GenerateCommandOptions {
  ConfigOptions config;
  std::string prompt;
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: no limit
  double top_p = 1.0;        // 1: no limit
  uint64_t seed = 0;
};

// Prints the completion (the new text only) on stdout; information lines go to stderr.
// Runs in every rank of a tensor-parallel job (or alone); `launch` says which rank this is.
int run_generate_command(const GenerateCommandOptions& options, const LaunchEnvironment& launch);

}  // namespace cr
