// Data-parallel gradient reduction for every ZeRO stage, bucket by bucket (ShardLayout's buckets),
// started from gradient-accumulator hooks the moment a bucket's last gradient arrives, so that
// communication overlaps the rest of backward:
//
//   stage 0: reduce-scatter, then all-gather: every rank gets the whole averaged gradient
//   stage 1: reduce-scatter: each rank gets its slices averaged
//   stage 2-3: each parameter's gradient is copied into its bucket's fp32 staging buffer and
//              freed; full buckets are reduce-scattered and added into the rank's gradient shard;
//              at most two staging buffers exist at a time
//
// Stages 0-1 accumulate micro-batches locally and communicate once per step; stages 2-3 keep no
// whole gradient, so they reduce every micro-batch (as DeepSpeed and Colossal-AI do). With fp32
// compute at stages 0-1 autograd adds straight into the flat fp32 buffer; with bf16 / fp16 the
// hooks add each low-precision gradient into it and free it, so no whole low-precision gradient
// buffer exists either.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "memory/zero_parameters.h"
#include "parallel/communicator.h"

namespace cr {

class GradientSynchronizer {
 public:
  // overlap: reduce buckets while backward goes on; otherwise each bucket is reduced, and
  // waited for, as soon as it is full.
  GradientSynchronizer(ZeroParameters& params, bool overlap);
  GradientSynchronizer(const GradientSynchronizer&) = delete;
  GradientSynchronizer& operator=(const GradientSynchronizer&) = delete;

  // Before each micro-batch's backward: whether it is the step's last.
  void begin_backward(bool last_micro_batch);
  // After each micro-batch's backward: finishes the reduction that backward owes.
  void end_backward();

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets of the last reducing backward whose communication started while it was running.
  int64_t started_during_backward() const { return started_during_backward_; }
  int64_t bytes_sent_per_step() const;  // per reducing backward, ring estimate, for benchmarks
  int64_t peak_staging_bytes() const { return peak_staging_bytes_; }

 private:
  struct Bucket {
    int pending = 0;  // parameter parts whose gradient has not arrived this backward
    int size = 0;     // parameter parts in the bucket
    bool launched = false;
    torch::Tensor staging;  // stages 2-3, while in use
  };
  struct InFlight {
    size_t bucket;
    std::unique_ptr<CommWork> work;  // null when there is nothing to wait for (one rank)
  };
  struct Span {
    size_t bucket;
    int64_t flat_begin, numel;  // the part of a parameter inside that bucket
  };
  void on_gradient(size_t entry);
  void launch(size_t bucket);
  void complete(InFlight& item);
  void drain();  // completes everything in flight, in launch order
  torch::Tensor acquire_staging(size_t bucket);
  void poke();

  ZeroParameters& params_;
  Communicator* group_;
  bool staged_;  // stages 2-3
  bool fold_;    // stages 0-1 with low-precision gradients
  bool overlap_;
  bool reducing_ = true;  // this backward ends with a reduction
  std::vector<Bucket> buckets_;
  std::vector<std::vector<Span>> spans_of_entry_;
  std::vector<InFlight> in_flight_;
  int64_t staging_in_use_ = 0, staging_bytes_ = 0, peak_staging_bytes_ = 0;
  int64_t launched_ = 0;  // buckets started this backward
  int64_t started_during_backward_ = 0;
};

}  // namespace cr
