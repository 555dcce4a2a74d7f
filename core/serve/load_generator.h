// `colossal-run bench-serve`: replays requests against a running server at a given rate and
// concurrency, streaming each one, and measures what a user sees: throughput, time to first
// token and inter-token latency percentiles, and the server's KV-cache use (read from /metrics).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cr {

struct LoadOptions {
  std::string url = "http://127.0.0.1:8000";
  int64_t requests = 64;
  double rate = 0;           // requests started per second (Poisson arrivals); 0: as fast as concurrency allows
  int64_t concurrency = 16;  // requests in flight at most
  int64_t prompt_min = 32, prompt_max = 256;  // prompt tokens, drawn uniformly
  int64_t output_min = 32, output_max = 256;  // max_tokens, drawn uniformly (greedy; no stop token)
  int64_t vocab = 256;       // prompt ids are drawn below this
  uint64_t seed = 0;
};

// POSTs `body` (JSON) to `url` + `path` and calls on_event with each server-sent event's data
// ("[DONE]" included) as it arrives; false from on_event closes the connection. Returns the
// HTTP status, 0 when no response came.
int post_event_stream(const std::string& url, const std::string& path, const std::string& body,
                      const std::function<bool(const std::string& data)>& on_event);

// Percentile q in [0, 1] of `values` (nearest rank); 0 for none.
double percentile(std::vector<double> values, double q);

// Runs the load and returns one JSON object; cr::Error when the server cannot be reached.
nlohmann::json run_load(const LoadOptions& options);

}  // namespace cr
