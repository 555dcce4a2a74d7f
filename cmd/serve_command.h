// `colossal-run serve`: the config's model behind an OpenAI-compatible HTTP server
// (core/serve), until SIGINT or SIGTERM, on one process or split over a tensor-parallel job
// (rank 0 serves HTTP); `bench-serve`: load against such a server.
#pragma once

#include <optional>
#include <string>

#include "cmd/commands.h"
#include "cmd/launch.h"
#include "core/serve/load_generator.h"

namespace cr {

struct ServeCommandOptions {
  ConfigOptions config;
  std::optional<std::string> host;  // serve.host otherwise
  std::optional<int64_t> port;      // serve.port otherwise
};

int run_serve_command(const ServeCommandOptions& options, const LaunchEnvironment& launch);
// `colossal-run bench-serve`: run_load() against a server; exit 1 when a request failed.
int run_bench_serve_command(const LoadOptions& options);

}  // namespace cr
