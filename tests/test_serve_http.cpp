// The HTTP server end to end on a loopback port: concurrent streaming clients, one that leaves
// mid-stream, the OpenAI error bodies for bad requests, and the metrics.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "core/infer/causal_lm_decoder.h"
#include "core/infer/generation.h"
#include "core/serve/engine_loop.h"
#include "core/serve/http_server.h"
#include "core/serve/load_generator.h"
#include "core/serve/serving_engine.h"
#include "core/text/tokenizer.h"
#include "models/causal_lm.h"
#include "models/model_spec.h"

using Catch::Matchers::Contains;
using nlohmann::json;
using namespace cr;

namespace {

// A server of a tiny preset (random weights, byte tokenizer) on a free loopback port.
struct TestServer {
  explicit TestServer(int64_t max_batch_size = 8, int64_t max_waiting = 4, const std::string& preset = "gpt2-tiny")
      : model(build_model(find_model_preset(preset).spec, 7)),
        engine(model, {16, 48, {max_batch_size, 64}}),
        loop(engine, max_waiting),
        config([&] {
          ServeConfig c;
          c.max_batch_size = max_batch_size;
          c.max_waiting = max_waiting;
          return c;
        }()) {}

  CausalLM model;
  std::unique_ptr<Tokenizer> tokenizer = make_tokenizer("byte", std::nullopt);
  ServingEngine engine;
  EngineLoop loop;
  ServeConfig config;
  HttpServer server{loop, {"tiny", tokenizer.get(), 128, 512, ChatTemplate::Plain}, config};
  int port = server.bind("127.0.0.1", 0);
  std::thread thread{[this] { server.run(); }};

  ~TestServer() {
    server.stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(std::chrono::seconds(30));
    return c;
  }
  // Polls until the engine holds no request (an abort reaches it between iterations).
  bool drained() const {
    for (int i = 0; i < 200; ++i) {
      const ServingStats stats = loop.stats();
      if (stats.running == 0 && stats.waiting == 0 && stats.used_blocks == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }
};

json completion_body(const std::string& prompt, bool stream, int max_tokens = 40) {
  return {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", stream}};
}

struct StreamResult {
  std::string text, finish_reason;
  int status = 0;
  int events = 0;
  bool done = false;
};

// Reads a completion stream; leaves (closes the connection) after `leave_after` events if given.
StreamResult stream_completion(const TestServer& server, const json& body, int leave_after = -1) {
  StreamResult result;
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port);
  result.status = post_event_stream(url, "/v1/completions", body.dump(), [&](const std::string& data) {
    if (data == "[DONE]") {
      result.done = true;
      return true;
    }
    const json chunk = json::parse(data);
    result.text += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) result.finish_reason = chunk["choices"][0]["finish_reason"];
    return ++result.events != leave_after;
  });
  return result;
}

}  // namespace

TEST_CASE("concurrent streams complete while one client leaves mid-stream, and its blocks return") {
  TestServer server;
  // The whole completion of each prompt, for reference.
  std::vector<std::string> prompts, expected;
  for (int i = 0; i < 5; ++i) {
    prompts.push_back("client " + std::to_string(i) + " asks");
    auto response = server.client().Post("/v1/completions", completion_body(prompts.back(), false).dump(),
                                         "application/json");
    REQUIRE(response);
    INFO(response->body);
    REQUIRE(response->status == 200);
    const json body = json::parse(response->body);
    CHECK(body["object"] == "text_completion");
    CHECK(body["choices"][0]["finish_reason"] == "length");
    CHECK(body["usage"]["completion_tokens"] == 40);
    expected.push_back(body["choices"][0]["text"]);
  }
  std::vector<StreamResult> results(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int leave_after = i == 0 ? 3 : -1;
    clients.emplace_back([&, i, leave_after] {
      results[i] = stream_completion(server, completion_body(prompts[i], true), leave_after);
    });
  }
  for (auto& client : clients) client.join();
  CHECK(results[0].events == 3);
  CHECK_FALSE(results[0].done);
  for (size_t i = 1; i < prompts.size(); ++i) {
    INFO("client " << i);
    CHECK(results[i].status == 200);
    CHECK(results[i].done);
    CHECK(results[i].finish_reason == "length");
    CHECK(results[i].text == expected[i]);  // greedy: streamed pieces join to the whole completion
  }
  CHECK(server.drained());
  auto metrics = server.client().Get("/metrics");
  REQUIRE(metrics);
  CHECK_THAT(metrics->body, Contains("colossal_run_requests_aborted_total 1\n"));
  CHECK_THAT(metrics->body, Contains("colossal_run_kv_blocks_used 0\n"));
  CHECK_THAT(metrics->body, Contains("colossal_run_time_to_first_token_seconds_count 10\n"));
}

TEST_CASE("greedy completions through the server equal generate's, alone and 32 at once, for every architecture") {
  for (const std::string preset : {"gpt2-tiny", "opt-tiny", "llama-tiny"}) {
    INFO(preset);
    TestServer server(/*max_batch_size=*/32, /*max_waiting=*/32, preset);
    auto decoder = make_cached_decoder(server.model);
    const auto tokenizer = server.tokenizer.get();
    std::vector<std::vector<int64_t>> prompts;
    std::vector<int64_t> max_tokens;
    std::vector<std::string> expected;
    for (int i = 0; i < 32; ++i) {
      std::vector<int64_t> prompt;
      for (int t = 0; t < 1 + (i * 7) % 40; ++t) prompt.push_back((i * 31 + t * 17) % 256);
      GenerationOptions options;
      options.max_new_tokens = 1 + (i * 5) % 24;
      options.sampling.temperature = 0;
      options.stop_token = tokenizer->eot_id();
      options.vocab_limit = tokenizer->vocab_size();
      const Generation generated = generate(*decoder, prompt, options);
      std::vector<uint32_t> ids(generated.tokens.begin(), generated.tokens.end());
      if (generated.stop == StopReason::StopToken) ids.pop_back();
      // The server sends bytes that are not UTF-8 as U+FFFD.
      const std::string text = json(tokenizer->decode(ids)).dump(-1, ' ', false, json::error_handler_t::replace);
      expected.push_back(json::parse(text).get<std::string>());
      prompts.push_back(prompt);
      max_tokens.push_back(options.max_new_tokens);
    }
    // Runs on client threads: no assertions here (Catch's are not thread-safe); a failure is text
    // that cannot equal a completion.
    const auto complete = [&](size_t i) -> std::string {
      const json body = {{"prompt", prompts[i]}, {"max_tokens", max_tokens[i]}, {"temperature", 0}};
      auto response = server.client().Post("/v1/completions", body.dump(), "application/json");
      if (!response) return "<no response: " + httplib::to_string(response.error()) + ">";
      if (response->status != 200) return "<HTTP " + std::to_string(response->status) + ": " + response->body + ">";
      return json::parse(response->body)["choices"][0]["text"].get<std::string>();
    };
    CHECK(complete(5) == expected[5]);  // alone
    std::vector<std::string> served(prompts.size());
    std::vector<std::thread> clients;
    for (size_t i = 0; i < prompts.size(); ++i) clients.emplace_back([&, i] { served[i] = complete(i); });
    for (auto& client : clients) client.join();
    for (size_t i = 0; i < prompts.size(); ++i) {
      INFO("request " << i);
      CHECK(served[i] == expected[i]);
    }
    CHECK(server.drained());
  }
}

TEST_CASE("bad requests get OpenAI error bodies with the right status, and the server goes on") {
  TestServer server;
  auto client = server.client();
  const auto post = [&](const std::string& path, const std::string& body) {
    auto response = client.Post(path, body, "application/json");
    REQUIRE(response);
    return std::make_pair(response->status, json::parse(response->body));
  };
  auto [status, body] = post("/v1/completions", "{\"prompt\": \"a\",");
  CHECK(status == 400);
  CHECK_THAT(body["error"]["message"].get<std::string>(), Contains("not valid JSON"));
  std::tie(status, body) = post("/v1/completions", R"({"prompt": "a", "max_tokenz": 3})");
  CHECK(status == 400);
  CHECK(body["error"]["param"] == "max_tokenz");
  CHECK(body["error"]["type"] == "invalid_request_error");
  std::tie(status, body) = post("/v1/completions", json{{"prompt", std::string(200, 'x')}}.dump());
  CHECK(status == 400);
  CHECK_THAT(body["error"]["message"].get<std::string>(),
             Contains("maximum context length is 128 tokens; the prompt has 200"));
  std::tie(status, body) = post("/v1/completions", R"({"prompt": "abc", "max_tokens": 126})");
  CHECK(status == 400);
  CHECK(body["error"]["param"] == "max_tokens");
  std::tie(status, body) = post("/v1/completions", R"({"prompt": "abc", "temperature": -1})");
  CHECK(status == 400);
  CHECK(body["error"]["param"] == "temperature");
  std::tie(status, body) = post("/v1/completions", R"({"prompt": "abc", "model": "gpt-4"})");
  CHECK(status == 404);
  std::tie(status, body) = post("/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "hi"}]})");
  CHECK(status == 400);
  CHECK(body["error"]["param"] == "messages[0].role");

  auto missing = client.Get("/v1/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  CHECK_THAT(json::parse(missing->body)["error"]["message"].get<std::string>(), Contains("no route GET /v1/nothing"));
  auto wrong_method = client.Get("/v1/completions");
  REQUIRE(wrong_method);
  CHECK(wrong_method->status == 405);

  auto models = client.Get("/v1/models");
  REQUIRE(models);
  CHECK(json::parse(models->body)["data"][0]["id"] == "tiny");
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  // A chat completion with a plain transcript, and n choices with seeds seed, seed + 1.
  std::tie(status, body) = post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}],
      "max_tokens": 5, "n": 2, "seed": 3, "temperature": 1.0})");
  CHECK(status == 200);
  CHECK(body["object"] == "chat.completion");
  CHECK(body["choices"].size() == 2);
  CHECK(body["choices"][0]["message"]["role"] == "assistant");
  CHECK(body["usage"]["completion_tokens"] == 10);
  CHECK(server.drained());
}

TEST_CASE("a request beyond the waiting queue is refused with 429") {
  TestServer server(/*max_batch_size=*/1, /*max_waiting=*/2);
  // One long request runs and two wait: the queue is full.
  std::vector<std::shared_ptr<RequestStream>> streams;
  const auto submit_and_wait = [&](int64_t running, int64_t waiting) {
    ServingRequest request;
    request.prompt = {1, 2, 3};
    request.max_new_tokens = 120;
    streams.push_back(server.loop.submit(request));
    REQUIRE(streams.back());
    for (int i = 0; i < 2000; ++i) {
      const ServingStats stats = server.loop.stats();
      if (stats.running == running && stats.waiting == waiting) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    FAIL("the engine did not take the request");
  };
  submit_and_wait(1, 0);
  submit_and_wait(1, 1);
  submit_and_wait(1, 2);
  auto response = server.client().Post("/v1/completions", completion_body("late", false).dump(), "application/json");
  REQUIRE(response);
  CHECK(response->status == 429);
  CHECK(json::parse(response->body)["error"]["type"] == "rate_limit_error");
  for (const auto& stream : streams) server.loop.abort(stream);
  CHECK(server.drained());
}
