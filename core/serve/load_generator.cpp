#include "core/serve/load_generator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "core/base/crc32.h"
#include "core/base/error.h"

namespace cr {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Outcome {
  bool ok = false;
  int64_t pieces = 0;  // streamed pieces of text: a token or more each
  std::string text;
  double ttft = 0, total = 0;
  std::vector<double> gaps;  // between consecutive tokens
};

// One streamed completion of `prompt` with `max_tokens` new tokens.
Outcome stream_one(const std::string& url, const std::vector<int64_t>& prompt, int64_t max_tokens) {
  const json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", true}};
  Outcome outcome;
  const auto start = Clock::now();
  auto last = start;
  bool done = false;
  const int status = post_event_stream(url, "/v1/completions", body.dump(), [&](const std::string& data) {
    if (data == "[DONE]") {
      done = true;
      return true;
    }
    const json chunk = json::parse(data, nullptr, false);
    if (chunk.is_discarded() || !chunk.contains("choices")) return false;  // an error event
    const std::string piece = chunk["choices"][0]["text"];
    if (piece.empty()) return true;
    outcome.text += piece;
    const auto now = Clock::now();
    // A piece of text is one token or more (held-back bytes of a character come together).
    if (outcome.pieces == 0) {
      outcome.ttft = std::chrono::duration<double>(now - start).count();
    } else {
      outcome.gaps.push_back(std::chrono::duration<double>(now - last).count());
    }
    last = now;
    ++outcome.pieces;
    return true;
  });
  outcome.ok = done && status == 200;
  outcome.total = std::chrono::duration<double>(Clock::now() - start).count();
  return outcome;
}

// A gauge's value in Prometheus text, or -1.
double metric(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

}  // namespace

int post_event_stream(const std::string& url, const std::string& path, const std::string& body,
                      const std::function<bool(const std::string& data)>& on_event) {
  httplib::Client client(url);
  client.set_read_timeout(std::chrono::minutes(10));
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.body = body;
  request.set_header("Content-Type", "application/json");
  std::string buffer;
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    buffer.append(data, size);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      constexpr std::string_view kData = "data: ";
      if (event.compare(0, kData.size(), kData) != 0) continue;  // comments and other fields
      if (!on_event(event.substr(kData.size()))) return false;
    }
    return true;
  };
  const auto result = client.send(request);
  return result ? result->status : 0;
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

json run_load(const LoadOptions& options) {
  if (options.prompt_min > options.prompt_max || options.output_min > options.output_max) {
    fail("bench-serve: --prompt-min {} / --prompt-max {}, --output-min {} / --output-max {}: each minimum must not "
         "exceed its maximum", options.prompt_min, options.prompt_max, options.output_min, options.output_max);
  }
  httplib::Client probe(options.url);
  const auto health = probe.Get("/health");
  if (!health || health->status != 200) fail("bench-serve: no server answers at {}/health", options.url);

  std::mt19937_64 rng(options.seed);
  std::vector<std::vector<int64_t>> prompts;
  std::vector<int64_t> outputs;
  int64_t prompt_tokens = 0;
  for (int64_t i = 0; i < options.requests; ++i) {
    const int64_t length = std::uniform_int_distribution<int64_t>(options.prompt_min, options.prompt_max)(rng);
    std::vector<int64_t> prompt(length);
    for (auto& id : prompt) id = std::uniform_int_distribution<int64_t>(0, options.vocab - 1)(rng);
    prompt_tokens += length;
    prompts.push_back(std::move(prompt));
    outputs.push_back(std::uniform_int_distribution<int64_t>(options.output_min, options.output_max)(rng));
  }

  // Tokens counted by the server: a streamed piece of text may hold more than one.
  const auto generated_total = [&] {
    const auto response = probe.Get("/metrics");
    return response ? metric(response->body, "colossal_run_generated_tokens_total") : -1.0;
  };
  const double generated_before = generated_total();
  std::vector<Outcome> outcomes(options.requests);
  std::atomic<int64_t> next{0};
  std::atomic<bool> running{true};
  std::mutex samples_mutex;
  std::vector<double> used_blocks, fragmentation;
  // The server's KV-cache gauges, sampled while the load runs.
  std::thread sampler([&] {
    httplib::Client client(options.url);
    while (running) {
      if (auto response = client.Get("/metrics")) {
        const double used = metric(response->body, "colossal_run_kv_blocks_used");
        if (used > 0) {
          std::lock_guard<std::mutex> lock(samples_mutex);
          used_blocks.push_back(used);
          fragmentation.push_back(metric(response->body, "colossal_run_kv_fragmentation"));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  // Poisson arrivals: each request's start time, drawn up front.
  std::vector<double> start_at(options.requests, 0.0);
  if (options.rate > 0) {
    std::exponential_distribution<double> gap(options.rate);
    for (int64_t i = 1; i < options.requests; ++i) start_at[i] = start_at[i - 1] + gap(rng);
  }
  const auto begin = Clock::now();
  std::vector<std::thread> workers;
  for (int64_t w = 0; w < std::min(options.concurrency, options.requests); ++w) {
    workers.emplace_back([&] {
      for (int64_t i; (i = next++) < options.requests;) {
        std::this_thread::sleep_until(begin + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(start_at[i])));
        outcomes[i] = stream_one(options.url, prompts[i], outputs[i]);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  running = false;
  sampler.join();

  int64_t failed = 0, pieces = 0;
  std::vector<double> ttft, itl, latency;
  for (const Outcome& outcome : outcomes) {
    if (!outcome.ok) {
      ++failed;
      continue;
    }
    pieces += outcome.pieces;
    ttft.push_back(outcome.ttft);
    latency.push_back(outcome.total);
    itl.insert(itl.end(), outcome.gaps.begin(), outcome.gaps.end());
  }
  const double generated_after = generated_total();
  const auto generated = generated_before >= 0 && generated_after >= 0
                             ? static_cast<int64_t>(generated_after - generated_before)
                             : pieces;
  // Greedy completions are a function of the model and the prompts: equal digests, equal outputs
  // (one server against another, a tensor-parallel one against one process).
  uint32_t digest = 0;
  for (const Outcome& outcome : outcomes) digest = crc32(outcome.text.data(), outcome.text.size(), digest);
  double mean_fragmentation = 0, peak_blocks = 0;
  for (size_t i = 0; i < used_blocks.size(); ++i) {
    mean_fragmentation += fragmentation[i] / static_cast<double>(used_blocks.size());
    peak_blocks = std::max(peak_blocks, used_blocks[i]);
  }
  return {{"requests", options.requests},
          {"failed", failed},
          {"concurrency", options.concurrency},
          {"rate", options.rate},
          {"duration_s", seconds},
          {"prompt_tokens", prompt_tokens},
          {"generated_tokens", generated},
          {"output_tokens_per_s", static_cast<double>(generated) / seconds},
          {"requests_per_s", static_cast<double>(options.requests - failed) / seconds},
          {"ttft_s", {{"p50", percentile(ttft, 0.5)}, {"p99", percentile(ttft, 0.99)}}},
          {"itl_s", {{"p50", percentile(itl, 0.5)}, {"p99", percentile(itl, 0.99)}}},
          {"latency_s", {{"p50", percentile(latency, 0.5)}, {"p99", percentile(latency, 0.99)}}},
          {"kv_blocks_used_peak", peak_blocks},
          {"kv_fragmentation_mean", mean_fragmentation},
          {"output_crc32", fmt::format("{:08x}", digest)}};
}

}  // namespace cr
