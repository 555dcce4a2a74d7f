// The serving engine on a thread of its own. HTTP handlers submit requests and read each one's
// tokens from a RequestStream as iterations produce them; the loop applies submissions and
// aborts between iterations, so the engine itself is only ever touched by its thread. Also
// keeps the server's metrics: queue, batch and block counts, tokens per second, time to first
// token and inter-token latency. A tensor-parallel server runs one engine per rank: rank 0's
// loop sends each round's submissions and aborts to the others (follow_engine), so that every
// rank runs the same iterations over its slice of the model.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/serve/engine_commands.h"
#include "core/serve/latency_histogram.h"
#include "core/serve/serving_engine.h"

namespace cr {

// One request's tokens as they come; shared by the loop (writer) and a handler (reader).
// A request's stream as one moment saw it: the tokens and whether they are all there come
// together, so a reader never takes "done" with the last token missing.
struct StreamSnapshot {
  std::vector<int64_t> tokens;
  bool done = false;  // finished, aborted or failed
  std::optional<StopReason> stop;
  std::string error;  // why the engine refused it, if it did
};

class RequestStream {
 public:
  // Waits up to `timeout` for tokens past the first `seen` or for the end; all tokens so far.
  StreamSnapshot wait_beyond(size_t seen, std::chrono::milliseconds timeout);
  bool done() const;  // finished, aborted or failed

 private:
  friend class EngineLoop;
  void push(int64_t token, std::optional<StopReason> stop);
  void mark_aborted();
  void fail(const std::string& error);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<int64_t> tokens_;
  std::optional<StopReason> stop_;
  std::string error_;
  bool aborted_ = false;
};

class EngineLoop {
 public:
  // Starts the thread. `max_waiting`: requests waiting for a place in the batch (beyond the
  // places free now) at which submit refuses more. `replicate`, on rank 0 of a tensor-parallel
  // server: sends each round's encoded commands to the other ranks (at least once a second,
  // so that they never wait long enough for the collective timeout).
  EngineLoop(ServingEngine& engine, int64_t max_waiting,
             std::function<void(const std::string&)> replicate = nullptr);
  ~EngineLoop();  // stops the thread; unfinished requests end aborted
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // The request's stream, or nothing when max_waiting requests are already waiting.
  std::shared_ptr<RequestStream> submit(ServingRequest request);
  void abort(const std::shared_ptr<RequestStream>& stream);  // the client left: its blocks are freed
  std::string prometheus_metrics() const;
  ServingStats stats() const;

 private:
  struct Pending {
    ServingRequest request;
    std::shared_ptr<RequestStream> stream;
    std::chrono::steady_clock::time_point submitted;
  };
  struct Active {
    std::shared_ptr<RequestStream> stream;
    std::chrono::steady_clock::time_point submitted, last_token;
    bool first_token = true;
  };
  void run();
  // Under mutex_: the round's commands from what was submitted and aborted since the last one; the
  // submissions' pending entries, in the commands' order.
  std::deque<Pending> take_round(EngineCommands& commands);
  // Under mutex_: an iteration's tokens (or failure) to their streams and the metrics.
  void deliver(const std::vector<RequestUpdate>& updates, const std::string& failure,
               std::chrono::steady_clock::time_point now);

  ServingEngine& engine_;
  int64_t max_waiting_;
  std::function<void(const std::string&)> replicate_;
  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::deque<Pending> submitted_;
  std::vector<std::shared_ptr<RequestStream>> aborted_;
  std::vector<std::pair<RequestId, Active>> active_;  // engine thread only
  std::vector<RequestId> failed_;                     // to drop from the engine next round
  bool stopping_ = false;
  // Metrics, under mutex_.
  ServingStats stats_;
  LatencyHistogram time_to_first_token_, inter_token_latency_;
  uint64_t generated_tokens_ = 0, finished_requests_ = 0, aborted_requests_ = 0;
  // Tokens per iteration over the last kRateWindow, for the tokens/s gauge.
  static constexpr std::chrono::seconds kRateWindow{5};
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> recent_tokens_;
  std::thread thread_;
};

}  // namespace cr
