// The serving engine: requests in, tokens out, one model iteration at a time. Each iteration
// asks the scheduler what to run (continuous batching over the paged KV cache), runs every
// scheduled sequence's new tokens through the model as one packed batch, and samples the next
// token of each sequence that reached its end, with the same choices `generate` makes for the
// same prompt, options and seed.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/infer/generation.h"
#include "core/infer/sampling.h"
#include "core/serve/batch_scheduler.h"
#include "core/serve/kv_block_manager.h"
#include "core/serve/paged_kv_cache.h"
#include "models/causal_lm.h"

namespace cr {

struct ServingOptions {
  int64_t block_size = 16;  // token slots per KV block
  int64_t num_blocks = 0;   // KV blocks in the pool
  SchedulerLimits limits;
};

struct ServingRequest {
  std::vector<int64_t> prompt;
  int64_t max_new_tokens = 16;
  SamplingOptions sampling;
  uint64_t seed = 0;
  std::vector<int64_t> stop_tokens;   // any of them ends the request (it is kept in the output)
  std::optional<int64_t> vocab_limit;  // ids from here up are never chosen
};

// What one iteration did for a request: the token it produced, and the reason it ended if it did.
struct RequestUpdate {
  RequestId request = 0;
  int64_t token = 0;
  std::optional<StopReason> stop;
};

struct ServingStats {
  int64_t waiting = 0, running = 0;
  int64_t used_blocks = 0, total_blocks = 0;
  double fragmentation = 0.0;  // share of the used blocks' slots holding no K/V
  int64_t preemptions = 0;     // since start
  int64_t iterations = 0;
};

// Bytes of one KV block of `model` over all its layers, keys and values (this rank's heads).
int64_t kv_block_bytes(const CausalLMImpl& model, int64_t block_size);

class ServingEngine {
 public:
  // The model runs in eval mode, without gradients; the pool lives on its device in its dtype.
  ServingEngine(CausalLM model, ServingOptions options);

  // Queues a request and returns its id. cr::Error when it cannot run: an empty prompt, one that
  // fills the context (model.max_seq_len), max_new_tokens < 1, or more blocks than the pool has.
  RequestId submit(ServingRequest request);
  // One model iteration; no updates when there is nothing to run.
  std::vector<RequestUpdate> step();
  void abort(RequestId request);  // frees its blocks; a finished or unknown request is ignored
  bool idle() const { return scheduler_.idle(); }
  ServingStats stats() const;
  const SchedulerLimits& limits() const { return limits_; }

 private:
  struct Live {
    ServingRequest request;
    TokenSampler sampler;
  };
  std::optional<StopReason> stop_after(const Live& live, int64_t token, int64_t generated, int64_t length) const;

  CausalLM model_;
  SchedulerLimits limits_;
  KvBlockManager blocks_;
  PagedKVStore store_;
  BatchScheduler scheduler_;
  torch::Device device_;  // the model's, where the pool and each batch's tensors live
  std::unordered_map<RequestId, Live> live_;
  RequestId next_id_ = 1;
  int64_t preemptions_ = 0, iterations_ = 0;
};

}  // namespace cr
