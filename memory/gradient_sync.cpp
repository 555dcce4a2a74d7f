#include "memory/gradient_sync.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

namespace cr {

GradientSynchronizer::GradientSynchronizer(FlatParameters& params, Communicator& group, int64_t bucket_bytes)
    : params_(params), group_(group), overlap_(!params.has_master_copy()) {
  const int64_t element_bytes = 4;
  std::vector<size_t> bucket_of;
  for (const auto& entry : params.entries()) {
    if (buckets_.empty() || (buckets_.back().end - buckets_.back().begin) * element_bytes >= bucket_bytes) {
      buckets_.push_back({entry.offset, entry.offset, 0, 0});
    }
    buckets_.back().end = entry.offset + entry.numel;
    buckets_.back().size += 1;
    bucket_of.push_back(buckets_.size() - 1);
  }
  for (auto& bucket : buckets_) bucket.pending = bucket.size;
  if (!overlap_) return;
  // Post hooks of a leaf's gradient accumulator run after the gradient was added into .grad,
  // which for FlatParameters is the flat buffer itself.
  const auto params_by_entry = params.parameters_in_entry_order();
  for (size_t i = 0; i < params_by_entry.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(params_by_entry[i]);
    const size_t bucket = bucket_of[i];
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, bucket](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          if (sync_) on_gradient_ready(bucket);
          return outputs;
        }));
    accumulators_.push_back(std::move(accumulator));
  }
}

void GradientSynchronizer::on_gradient_ready(size_t bucket) {
  if (--buckets_[bucket].pending == 0) launch_ready_buckets();
  // MPI progresses non-blocking collectives only inside MPI calls: poke them while computing.
  for (auto& work : in_flight_) work->test();
}

void GradientSynchronizer::launch_ready_buckets() {
  // Every rank starts buckets in index order, whatever order its hooks fired in.
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].pending == 0) launch(next_to_launch_++);
}

void GradientSynchronizer::launch(size_t bucket) {
  const auto& b = buckets_[bucket];
  in_flight_.push_back(
      group_.all_reduce_async(params_.master_grad().narrow(0, b.begin, b.end - b.begin), ReduceOp::Avg));
}

void GradientSynchronizer::finish() {
  started_during_backward_ = static_cast<int64_t>(next_to_launch_);
  // Buckets whose parameters got no gradient this step (or all of them, without overlap).
  while (next_to_launch_ < buckets_.size()) launch(next_to_launch_++);
  for (auto& work : in_flight_) work->wait();
  in_flight_.clear();
  next_to_launch_ = 0;
  for (auto& bucket : buckets_) bucket.pending = bucket.size;
}

int64_t GradientSynchronizer::bytes_sent_per_step() const {
  const int64_t n = group_.size();
  return n <= 1 ? 0 : 2 * (n - 1) * params_.numel() * 4 / n;
}

}  // namespace cr
