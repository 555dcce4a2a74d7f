// `colossal-run eval`: loss and perplexity of a trained model over the config's evaluation data.
#pragma once

#include <cstdint>
#include <optional>

#include "cmd/commands.h"
#include "cmd/launch.h"

namespace cr {

struct EvalCommandOptions {
  ConfigOptions config;
  std::optional<int64_t> max_batches;  // none: the whole corpus
};

// Prints one summary line, then one JSON object {"loss", "perplexity", "tokens"} on stdout.
// Runs in every rank of a tensor-parallel job (or alone); `launch` says which rank this is.
int run_eval_command(const EvalCommandOptions& options, const LaunchEnvironment& launch);

}  // namespace cr
