// Data-parallel gradient averaging over the flat gradient buffer, in buckets that are
// contiguous ranges of it. With fp32 compute the gradients autograd writes are the ones the
// optimizer reads, so each bucket's all-reduce starts from a hook the moment its last
// gradient is accumulated, overlapping communication with the rest of backward. With a
// low-precision compute copy, the fp32 sums are averaged after backward instead (averaging
// bf16 partial sums would lose precision).
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "memory/flat_parameters.h"
#include "parallel/communicator.h"

namespace cr {

class GradientSynchronizer {
 public:
  GradientSynchronizer(FlatParameters& params, Communicator& group, int64_t bucket_bytes);
  GradientSynchronizer(const GradientSynchronizer&) = delete;
  GradientSynchronizer& operator=(const GradientSynchronizer&) = delete;

  // Gradient accumulation communicates only on the last micro-batch of a step.
  void set_sync_this_backward(bool sync) { sync_ = sync; }
  // After the last micro-batch (and, for bf16, after folding gradients into fp32): starts what
  // hooks have not started and waits until every bucket is averaged.
  void finish();

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets of the last step whose all-reduce started while backward was still running.
  int64_t started_during_backward() const { return started_during_backward_; }
  int64_t bytes_sent_per_step() const;  // ring all-reduce estimate, for benchmarks

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;  // range of the flat buffer
    int pending = 0;             // gradients not yet accumulated this step
    int size = 0;                // parameters in the bucket
  };
  void on_gradient_ready(size_t bucket);
  void launch_ready_buckets();
  void launch(size_t bucket);

  FlatParameters& params_;
  Communicator& group_;
  std::vector<Bucket> buckets_;
  std::vector<std::unique_ptr<CommWork>> in_flight_;
  size_t next_to_launch_ = 0;
  int64_t started_during_backward_ = 0;
  bool overlap_ = false;
  bool sync_ = true;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keep the hooks alive
};

}  // namespace cr
