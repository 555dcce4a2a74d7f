#include "core/serve/batch_scheduler.h"

#include <utility>

#include "core/base/error.h"

namespace cr {

std::string request_state_name(RequestState state) {
  switch (state) {
    case RequestState::Waiting: return "waiting";
    case RequestState::Running: return "running";
    case RequestState::Preempted: return "preempted";
    case RequestState::Finished: return "finished";
    case RequestState::Aborted: return "aborted";
  }
  return "unknown";
}

BatchScheduler::BatchScheduler(KvBlockManager& blocks, SchedulerLimits limits) : blocks_(blocks), limits_(limits) {
  CR_CHECK(limits.max_batch_size >= 1 && limits.max_prefill_tokens >= 1, "BatchScheduler: batch {}, prefill tokens {}",
           limits.max_batch_size, limits.max_prefill_tokens);
}

BatchScheduler::Request& BatchScheduler::request_at(RequestId request) {
  auto found = requests_.find(request);
  if (found == requests_.end()) fail("no request {}", request);
  return found->second;
}

const BatchScheduler::Request& BatchScheduler::request_at(RequestId request) const {
  return const_cast<BatchScheduler*>(this)->request_at(request);
}

void BatchScheduler::add(RequestId request, std::vector<int64_t> prompt, int64_t max_new_tokens) {
  if (requests_.count(request)) fail("request {} exists", request);
  if (prompt.empty()) fail("request {}: the prompt has no tokens", request);
  const int64_t most_tokens = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  const int64_t most_blocks = KvBlockManager::blocks_for(most_tokens, blocks_.block_size());
  if (most_blocks > blocks_.num_blocks()) {
    fail("request {}: {} prompt tokens and up to {} new ones need {} KV blocks of {} tokens; the cache has {}",
         request, prompt.size(), max_new_tokens, most_blocks, blocks_.block_size(), blocks_.num_blocks());
  }
  Request& added = requests_[request];
  added.prompt_length = prompt.size();
  added.tokens = std::move(prompt);
  waiting_.push_back(request);
}

ScheduledSequence BatchScheduler::scheduled(RequestId request, SlotReservation reservation) const {
  const auto& tokens = request_at(request).tokens;
  ScheduledSequence work;
  work.request = request;
  const auto first = tokens.begin() + reservation.first_position;
  work.tokens.assign(first, first + static_cast<int64_t>(reservation.slots.size()));
  work.samples = reservation.first_position + static_cast<int64_t>(reservation.slots.size()) ==
                 static_cast<int64_t>(tokens.size());
  work.reservation = std::move(reservation);
  return work;
}

void BatchScheduler::preempt_newest(Iteration& iteration) {
  const RequestId victim = running_.back();
  running_.pop_back();
  blocks_.free(victim);
  request_at(victim).state = RequestState::Preempted;
  waiting_.push_front(victim);
  iteration.preempted.push_back(victim);
}

Iteration BatchScheduler::next_iteration() {
  Iteration iteration;
  int64_t budget = limits_.max_prefill_tokens;
  // Running requests, oldest first; when the pool is short, the newest give their blocks back.
  for (size_t index = 0; index < running_.size();) {
    const RequestId request = running_[index];
    const auto known = static_cast<int64_t>(request_at(request).tokens.size());
    const int64_t remaining = known - blocks_.computed_tokens(request);
    const int64_t count = chunk(remaining, budget);
    if (count == 0) {  // a prompt waiting for prefill budget
      ++index;
      continue;
    }
    std::optional<SlotReservation> reservation;
    while (!(reservation = blocks_.reserve(request, count)) && running_.back() != request) preempt_newest(iteration);
    if (!reservation) {
      preempt_newest(iteration);  // itself: nothing newer is left to give way
      break;
    }
    if (count > 1) budget -= count;
    iteration.sequences.push_back(scheduled(request, std::move(*reservation)));
    ++index;
  }
  // Admission, first come first served, unless this iteration already ran short of blocks.
  while (iteration.preempted.empty() && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < limits_.max_batch_size) {
    const RequestId request = waiting_.front();
    Request& admitted = request_at(request);
    const int64_t cached = blocks_.add_sequence(request, admitted.tokens);
    const int64_t count = chunk(static_cast<int64_t>(admitted.tokens.size()) - cached, budget);
    std::optional<SlotReservation> reservation;
    if (count > 0) reservation = blocks_.reserve(request, count);
    if (!reservation) {
      blocks_.free(request);
      break;
    }
    waiting_.pop_front();
    running_.push_back(request);
    admitted.state = RequestState::Running;
    if (count > 1) budget -= count;
    iteration.sequences.push_back(scheduled(request, std::move(*reservation)));
  }
  return iteration;
}

void BatchScheduler::append_token(RequestId request, int64_t token) {
  Request& running = request_at(request);
  if (running.state != RequestState::Running) {
    fail("request {} is {}: only a running request takes tokens", request, request_state_name(running.state));
  }
  if (blocks_.computed_tokens(request) != static_cast<int64_t>(running.tokens.size())) {
    fail("request {}: a token sampled before its last token was computed", request);
  }
  running.tokens.push_back(token);
  running.generated.push_back(token);
  blocks_.append_tokens(request, {token});
}

void BatchScheduler::stop(RequestId request, RequestState state) {
  Request& stopped = request_at(request);
  if (stopped.state == RequestState::Running) {
    blocks_.free(request);
    running_.erase(std::find(running_.begin(), running_.end(), request));
  } else if (stopped.state == RequestState::Waiting || stopped.state == RequestState::Preempted) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), request));
  } else {
    return;  // already finished or aborted
  }
  stopped.state = state;
}

void BatchScheduler::finish(RequestId request) { stop(request, RequestState::Finished); }

void BatchScheduler::abort(RequestId request) { stop(request, RequestState::Aborted); }

void BatchScheduler::forget(RequestId request) {
  const RequestState state = request_at(request).state;
  if (state != RequestState::Finished && state != RequestState::Aborted) {
    fail("request {} is {}: only finished or aborted requests are forgotten", request, request_state_name(state));
  }
  requests_.erase(request);
}

RequestState BatchScheduler::state(RequestId request) const { return request_at(request).state; }

const std::vector<int64_t>& BatchScheduler::generated(RequestId request) const { return request_at(request).generated; }

}  // namespace cr
