#include "core/serve/engine_loop.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/base/log.h"

namespace cr {

StreamSnapshot RequestStream::wait_beyond(size_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto ended = [&] { return stop_ || aborted_ || !error_.empty(); };
  changed_.wait_for(lock, timeout, [&] { return tokens_.size() > seen || ended(); });
  return {tokens_, ended(), stop_, error_};
}

bool RequestStream::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stop_ || aborted_ || !error_.empty();
}

void RequestStream::push(int64_t token, std::optional<StopReason> stop) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_.push_back(token);
    stop_ = stop;
  }
  changed_.notify_all();
}

void RequestStream::mark_aborted() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
  }
  changed_.notify_all();
}

void RequestStream::fail(const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = error;
  }
  changed_.notify_all();
}

EngineLoop::EngineLoop(ServingEngine& engine, int64_t max_waiting, std::function<void(const std::string&)> replicate)
    : engine_(engine),
      max_waiting_(max_waiting),
      replicate_(std::move(replicate)),
      stats_(engine.stats()),
      thread_([this] { run(); }) {}

EngineLoop::~EngineLoop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  thread_.join();
}

std::shared_ptr<RequestStream> EngineLoop::submit(ServingRequest request) {
  auto stream = std::make_shared<RequestStream>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t free_places = engine_.limits().max_batch_size - stats_.running;
    if (static_cast<int64_t>(submitted_.size()) + stats_.waiting >= max_waiting_ + free_places) return nullptr;
    submitted_.push_back({std::move(request), stream, std::chrono::steady_clock::now()});
  }
  work_.notify_all();
  return stream;
}

void EngineLoop::abort(const std::shared_ptr<RequestStream>& stream) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_.push_back(stream);
  }
  work_.notify_all();
}

std::deque<EngineLoop::Pending> EngineLoop::take_round(EngineCommands& commands) {
  commands.stop = stopping_;
  const auto is_aborted = [&](const std::shared_ptr<RequestStream>& stream) {
    return std::find(aborted_.begin(), aborted_.end(), stream) != aborted_.end();
  };
  std::deque<Pending> pending;
  for (Pending& p : submitted_) {
    if (is_aborted(p.stream)) {
      ++aborted_requests_;  // gone before it started
    } else {
      commands.submissions.push_back(p.request);
      pending.push_back(std::move(p));
    }
  }
  submitted_.clear();
  for (const auto& stream : aborted_) {
    auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& a) { return a.second.stream == stream; });
    if (it != active_.end()) {
      commands.aborts.push_back(it->first);
      active_.erase(it);
      ++aborted_requests_;
    }
    stream->mark_aborted();
  }
  aborted_.clear();
  commands.aborts.insert(commands.aborts.end(), failed_.begin(), failed_.end());
  failed_.clear();
  return pending;
}

void EngineLoop::deliver(const std::vector<RequestUpdate>& updates, const std::string& failure,
                         std::chrono::steady_clock::time_point now) {
  if (!failure.empty()) {
    // A model error ends every request in flight with it (the engine drops them with the next
    // round's commands, on every rank); the server goes on.
    warn0("serve: an iteration failed: {}", failure);
    for (auto& [id, active] : active_) {
      failed_.push_back(id);
      active.stream->fail(failure);
    }
    active_.clear();
  }
  for (const RequestUpdate& update : updates) {
    auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& a) { return a.first == update.request; });
    if (it == active_.end()) continue;
    Active& active = it->second;
    const double since = std::chrono::duration<double>(now - active.last_token).count();
    (active.first_token ? time_to_first_token_ : inter_token_latency_).observe(since);
    active.first_token = false;
    active.last_token = now;
    active.stream->push(update.token, update.stop);
    if (update.stop) {
      active_.erase(it);
      ++finished_requests_;
    }
  }
  generated_tokens_ += updates.size();
  recent_tokens_.emplace_back(now, static_cast<int64_t>(updates.size()));
  while (now - recent_tokens_.front().first > kRateWindow) recent_tokens_.pop_front();
}

void EngineLoop::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    const auto has_work = [&] { return stopping_ || !submitted_.empty() || !aborted_.empty() || !engine_.idle(); };
    if (replicate_) {
      work_.wait_for(lock, std::chrono::seconds(1), has_work);
    } else {
      work_.wait(lock, has_work);
    }
    EngineCommands commands;
    const std::deque<Pending> pending = take_round(commands);
    lock.unlock();
    if (replicate_) replicate_(commands.encode());
    if (commands.stop) {
      lock.lock();
      break;
    }
    const auto results = apply_commands(engine_, commands);
    lock.lock();
    for (size_t i = 0; i < pending.size(); ++i) {
      if (results[i].id) {
        active_.push_back({*results[i].id, Active{pending[i].stream, pending[i].submitted, pending[i].submitted}});
      } else {
        pending[i].stream->fail(results[i].error);
      }
    }
    stats_ = engine_.stats();
    lock.unlock();
    std::vector<RequestUpdate> updates;
    std::string failure;
    try {
      updates = engine_.step();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    const auto now = std::chrono::steady_clock::now();
    lock.lock();
    deliver(updates, failure, now);
    stats_ = engine_.stats();
  }
  for (auto& [id, active] : active_) active.stream->fail("the server is shutting down");
  for (const Pending& p : submitted_) p.stream->fail("the server is shutting down");
}

ServingStats EngineLoop::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::string EngineLoop::prometheus_metrics() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  const auto gauge = [&](const char* name, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, value);
  };
  const auto counter = [&](const char* name, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, value);
  };
  gauge("colossal_run_requests_waiting", "requests waiting for a place in the batch",
        static_cast<double>(stats_.waiting + static_cast<int64_t>(submitted_.size())));
  gauge("colossal_run_requests_running", "requests in the running batch", static_cast<double>(stats_.running));
  gauge("colossal_run_kv_blocks_used", "KV-cache blocks held by requests", static_cast<double>(stats_.used_blocks));
  gauge("colossal_run_kv_blocks_total", "KV-cache blocks in the pool", static_cast<double>(stats_.total_blocks));
  gauge("colossal_run_kv_fragmentation", "share of the used blocks' slots holding no keys and values",
        stats_.fragmentation);
  int64_t recent = 0;
  for (const auto& [when, count] : recent_tokens_) recent += count;
  gauge("colossal_run_tokens_per_second", "generated tokens per second over the last 5 seconds",
        static_cast<double>(recent) / std::chrono::duration<double>(kRateWindow).count());
  counter("colossal_run_generated_tokens_total", "tokens generated", static_cast<double>(generated_tokens_));
  counter("colossal_run_requests_finished_total", "requests completed", static_cast<double>(finished_requests_));
  counter("colossal_run_requests_aborted_total", "requests whose client left", static_cast<double>(aborted_requests_));
  counter("colossal_run_preemptions_total", "requests preempted for blocks", static_cast<double>(stats_.preemptions));
  out += time_to_first_token_.prometheus("colossal_run_time_to_first_token_seconds",
                                         "from arrival to the first generated token");
  out += inter_token_latency_.prometheus("colossal_run_inter_token_latency_seconds",
                                         "between consecutive generated tokens of a request");
  return out;
}

}  // namespace cr
