// Continuous batching, as plain data: which requests run in the next model iteration, and which
// of their positions, under a KV block pool, a batch size and a prefill token budget. Waiting
// requests are admitted first come, first served whenever blocks and the batch allow; prompts
// are computed in chunks; a finished or aborted request frees its blocks at once; when blocks
// run out, the newest running requests are preempted (their blocks freed, their tokens
// recomputed when they are admitted again) instead of the iteration failing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/serve/kv_block_manager.h"

namespace cr {

using RequestId = SequenceId;

enum class RequestState { Waiting, Running, Preempted, Finished, Aborted };
std::string request_state_name(RequestState state);

struct SchedulerLimits {
  int64_t max_batch_size = 32;       // sequences in one iteration
  int64_t max_prefill_tokens = 512;  // positions of prompts computed in one iteration (decode steps are free)
};

struct ScheduledSequence {
  RequestId request = 0;
  SlotReservation reservation;  // the positions this iteration computes, and their slots
  std::vector<int64_t> tokens;  // the tokens at those positions
  bool samples = false;         // the last known token is among them: its logits give the next token
};

struct Iteration {
  std::vector<ScheduledSequence> sequences;  // oldest admission first
  std::vector<RequestId> preempted;          // preempted while this iteration was planned
};

class BatchScheduler {
 public:
  // `blocks` outlives the scheduler, which holds the only sequences in it.
  BatchScheduler(KvBlockManager& blocks, SchedulerLimits limits);

  // Queues a request. cr::Error if it could never complete: an empty prompt, or a prompt and
  // max_new_tokens needing more blocks than the whole pool.
  void add(RequestId request, std::vector<int64_t> prompt, int64_t max_new_tokens);
  Iteration next_iteration();
  // The token sampled for a request whose work in the last iteration had `samples`.
  void append_token(RequestId request, int64_t token);
  void finish(RequestId request);  // a stop token, max_new_tokens, ...: Finished, blocks freed
  void abort(RequestId request);   // the client left: Aborted, blocks freed; a finished request stays so
  void forget(RequestId request);  // drops a finished or aborted request's record

  RequestState state(RequestId request) const;
  const std::vector<int64_t>& generated(RequestId request) const;
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  bool idle() const { return waiting_.empty() && running_.empty(); }

 private:
  struct Request {
    std::vector<int64_t> tokens;  // prompt, then generated
    size_t prompt_length = 0;
    std::vector<int64_t> generated;
    RequestState state = RequestState::Waiting;
  };

  Request& request_at(RequestId request);
  const Request& request_at(RequestId request) const;
  // Positions to compute next of a request with `remaining` uncomputed tokens, within `budget`.
  static int64_t chunk(int64_t remaining, int64_t budget) { return remaining == 1 ? 1 : std::min(remaining, budget); }
  ScheduledSequence scheduled(RequestId request, SlotReservation reservation) const;
  void preempt_newest(Iteration& iteration);
  void stop(RequestId request, RequestState state);

  KvBlockManager& blocks_;
  SchedulerLimits limits_;
  std::unordered_map<RequestId, Request> requests_;
  std::deque<RequestId> waiting_;  // preempted requests first, then arrivals in order
  std::vector<RequestId> running_;  // in admission order
};

}  // namespace cr
