// The serving engine against `generate`: the same tokens for every request, whatever the mix of
// lengths in a batch, prefill chunking, preemption or prefix sharing.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/base/error.h"
#include "core/infer/causal_lm_decoder.h"
#include "core/infer/generation.h"
#include "core/serve/engine_loop.h"
#include "core/serve/serving_engine.h"
#include "models/causal_lm.h"
#include "models/model_spec.h"

using Catch::Matchers::Contains;
using namespace cr;

namespace {

CausalLM tiny_model(const std::string& preset) {
  auto model = build_model(find_model_preset(preset).spec, 7);
  model->eval();
  return model;
}

// Mixed lengths: prompts of 1 to 45 tokens, 1 to 24 new tokens.
std::vector<ServingRequest> request_mix(int64_t count, const SamplingOptions& sampling) {
  std::vector<ServingRequest> requests;
  for (int64_t i = 0; i < count; ++i) {
    ServingRequest request;
    const int64_t length = 1 + (i * 7) % 45;
    for (int64_t t = 0; t < length; ++t) request.prompt.push_back((i * 31 + t * 17) % 500);
    request.max_new_tokens = 1 + (i * 5) % 24;
    request.sampling = sampling;
    request.seed = 100 + static_cast<uint64_t>(i);
    requests.push_back(request);
  }
  return requests;
}

std::map<RequestId, size_t> submit_all(ServingEngine& engine, const std::vector<ServingRequest>& requests) {
  std::map<RequestId, size_t> index;
  for (size_t i = 0; i < requests.size(); ++i) index[engine.submit(requests[i])] = i;
  return index;
}

// Runs the engine until it is idle; returns each request's tokens and stop, by submission order.
std::vector<Generation> run_to_end(ServingEngine& engine, const std::map<RequestId, size_t>& index) {
  std::vector<Generation> results(index.size());
  for (int guard = 0; !engine.idle(); ++guard) {
    REQUIRE(guard < 10000);
    for (const RequestUpdate& update : engine.step()) {
      Generation& result = results[index.at(update.request)];
      result.tokens.push_back(update.token);
      if (update.stop) result.stop = *update.stop;
    }
  }
  return results;
}

std::vector<Generation> serve_all(ServingEngine& engine, const std::vector<ServingRequest>& requests) {
  return run_to_end(engine, submit_all(engine, requests));
}

void check_equals_generate(CausalLM model, const std::vector<ServingRequest>& requests,
                           const std::vector<Generation>& served) {
  auto decoder = make_cached_decoder(model);
  for (size_t i = 0; i < requests.size(); ++i) {
    GenerationOptions options;
    options.max_new_tokens = requests[i].max_new_tokens;
    options.sampling = requests[i].sampling;
    options.seed = requests[i].seed;
    const Generation expected = generate(*decoder, requests[i].prompt, options);
    INFO("request " << i << " of " << requests[i].prompt.size() << " prompt tokens");
    CHECK(served[i].tokens == expected.tokens);
    CHECK(served[i].stop == expected.stop);
  }
}

}  // namespace

TEST_CASE("served tokens equal generate's for every architecture, 32 concurrent requests of mixed lengths") {
  for (const std::string preset : {"gpt2-tiny", "opt-tiny", "llama-tiny"}) {
    INFO(preset);
    auto model = tiny_model(preset);
    SamplingOptions greedy;
    greedy.temperature = 0;
    const auto requests = request_mix(32, greedy);
    // 60 blocks of 4 slots hold about a third of the mix at once: admission waits, some preempt.
    ServingEngine engine(model, {4, 60, {16, 24}});
    const auto served = serve_all(engine, requests);
    check_equals_generate(model, requests, served);
    const ServingStats stats = engine.stats();
    CHECK(stats.preemptions > 0);
    CHECK(stats.used_blocks == 0);
    CHECK(stats.iterations < 32 * 24);  // batched: far fewer iterations than tokens
  }
}

TEST_CASE("seeded sampling through the server draws what generate draws") {
  auto model = tiny_model("llama-tiny");
  SamplingOptions sampling;
  sampling.temperature = 0.9;
  sampling.top_k = 50;
  sampling.top_p = 0.9;
  const auto requests = request_mix(12, sampling);
  ServingEngine engine(model, {16, 64, {8, 32}});
  check_equals_generate(model, requests, serve_all(engine, requests));
}

TEST_CASE("requests sharing a prompt share its blocks and still generate alone's tokens") {
  auto model = tiny_model("gpt2-tiny");
  SamplingOptions greedy;
  greedy.temperature = 0;
  std::vector<ServingRequest> requests(3);
  for (int i = 0; i < 3; ++i) {
    for (int64_t t = 0; t < 37; ++t) requests[i].prompt.push_back((t * 13) % 400);
    requests[i].prompt.push_back(450 + i);  // a different last token each
    requests[i].max_new_tokens = 6;
    requests[i].sampling = greedy;
  }
  ServingEngine engine(model, {8, 32, {8, 256}});
  const auto index = submit_all(engine, requests);
  // All three join the first iteration; the second and third find the first's 4 full blocks as
  // its reservation fills them. 38 tokens are 4 full blocks and one of 6: 5 + 1 + 1 blocks.
  const auto first = engine.step();
  CHECK(first.size() == 3);
  CHECK(engine.stats().used_blocks == 5 + 1 + 1);
  auto served = run_to_end(engine, index);
  for (size_t i = 0; i < first.size(); ++i) {
    served[index.at(first[i].request)].tokens.insert(served[index.at(first[i].request)].tokens.begin(), first[i].token);
  }
  check_equals_generate(model, requests, served);
}

TEST_CASE("the engine refuses requests it cannot serve and frees an aborted request's blocks") {
  auto model = tiny_model("gpt2-tiny");  // context 128
  ServingEngine engine(model, {16, 16, {4, 64}});
  ServingRequest request;
  request.prompt.assign(128, 1);
  CHECK_THROWS_WITH(engine.submit(request), Contains("the prompt has 128 tokens; the model's context is 128"));
  request.prompt.assign(10, 1);
  request.max_new_tokens = 0;
  CHECK_THROWS_WITH(engine.submit(request), Contains("max_new_tokens is 0"));
  request.max_new_tokens = 1000;  // capped by the context: 118 new tokens, 8 blocks
  const RequestId id = engine.submit(request);
  engine.step();
  CHECK(engine.stats().used_blocks == 1);
  engine.abort(id);
  CHECK(engine.stats().used_blocks == 0);
  CHECK(engine.idle());
  CHECK(engine.step().empty());
}

TEST_CASE("a follower engine fed rank 0's commands runs the same iterations") {
  auto model = tiny_model("llama-tiny");
  SamplingOptions sampling;
  sampling.temperature = 0.7;
  auto requests = request_mix(10, sampling);
  requests[3].stop_tokens = {5, 9};
  requests[4].vocab_limit = 300;
  ServingEngine leader(model, {4, 40, {4, 16}});
  ServingEngine follower(model, {4, 40, {4, 16}});
  // The commands rank 0's loop would send, through a queue instead of a broadcast.
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::string> channel;
  std::thread follower_thread([&] {
    follow_engine(follower, [&] {
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return !channel.empty(); });
      std::string commands = channel.front();
      channel.pop_front();
      return commands;
    });
  });
  {
    EngineLoop loop(leader, 64, [&](const std::string& commands) {
      CHECK(EngineCommands::decode(commands).encode() == commands);
      std::lock_guard<std::mutex> lock(mutex);
      channel.push_back(commands);
      ready.notify_all();
    });
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const auto& request : requests) streams.push_back(loop.submit(request));
    loop.abort(streams[7]);
    for (auto& stream : streams) {
      while (!stream->done()) stream->wait_beyond(0, std::chrono::milliseconds(50));
    }
  }  // the loop's end sends the stop command
  follower_thread.join();
  CHECK(follower.idle());
  CHECK(follower.stats().iterations == leader.stats().iterations);
  CHECK(follower.stats().preemptions == leader.stats().preemptions);
  CHECK(follower.stats().used_blocks == 0);
}
