// `colossal-run bench-serve`: load against a running server, one JSON line on stdout.
#include <cstdio>

#include "cmd/serve_command.h"
#include "core/base/log.h"

namespace cr {

int run_bench_serve_command(const LoadOptions& options) {
  set_info_to_stderr(true);  // stdout carries the JSON line alone
  print0("bench-serve: {} requests to {} (concurrency {}, rate {}/s), prompts {}-{} tokens, outputs {}-{}",
         options.requests, options.url, options.concurrency, options.rate, options.prompt_min, options.prompt_max,
         options.output_min, options.output_max);
  const auto result = run_load(options);
  std::printf("%s\n", result.dump().c_str());
  return result["failed"].get<int64_t>() == 0 ? 0 : 1;
}

}  // namespace cr
