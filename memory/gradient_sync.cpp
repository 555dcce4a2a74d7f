#include "memory/gradient_sync.h"

#include <algorithm>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include "kernels/accumulate.h"

namespace cr {
namespace {

// sum += x, x in bf16 / fp16, without an fp32 temporary.
void add_widened(torch::Tensor sum, const torch::Tensor& x) {
  if (!sum.is_cpu()) {
    sum.add_(x);
    return;
  }
  const auto type = x.scalar_type() == torch::kBFloat16 ? ElementType::BF16 : ElementType::F16;
  accumulate_widened(sum.data_ptr<float>(), static_cast<const uint16_t*>(x.data_ptr()), type, x.numel());
}

}  // namespace

GradientSynchronizer::GradientSynchronizer(ZeroParameters& params, bool overlap)
    : params_(params),
      group_(params.group()),
      staged_(params.stage() >= 2),
      fold_(params.stage() <= 1 && params.low_precision()),
      overlap_(overlap) {
  const auto& layout = params.reduced();
  buckets_.resize(layout.buckets().size());
  size_t bucket = 0;
  for (const auto& entry : params.entries()) {
    // The parts of the parameter in each bucket it overlaps.
    auto& spans = spans_of_entry_.emplace_back();
    while (layout.buckets()[bucket].end <= entry.offset) ++bucket;
    for (size_t b = bucket; b < layout.buckets().size() && layout.buckets()[b].begin < entry.offset + entry.numel; ++b) {
      const int64_t begin = std::max(entry.offset, layout.buckets()[b].begin);
      const int64_t end = std::min(entry.offset + entry.numel, layout.buckets()[b].end);
      spans.push_back({b, begin, end - begin});
      buckets_[b].size += 1;
    }
  }
  for (auto& b : buckets_) b.pending = b.size;
  // Post hooks of a leaf's gradient accumulator run once its gradient for this backward is in
  // .grad: the flat buffer itself for fp32 stages 0-1, a fresh tensor otherwise.
  const auto& accumulators = params.grad_accumulators();
  for (size_t i = 0; i < accumulators.size(); ++i) {
    accumulators[i]->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient(i);
          return outputs;
        }));
  }
}

void GradientSynchronizer::begin_backward(bool last_micro_batch) {
  reducing_ = staged_ || last_micro_batch;
}

void GradientSynchronizer::on_gradient(size_t entry_index) {
  torch::NoGradGuard no_grad;
  auto param = params_.parameters()[entry_index];
  const auto& entry = params_.entries()[entry_index];
  torch::Tensor grad;
  if ((staged_ || fold_) && param.grad().defined()) {
    grad = param.grad().reshape({-1});
    param.mutable_grad().reset();
    if (fold_) add_widened(params_.gradient_sums().narrow(0, entry.offset, entry.numel), grad);
  }
  // Part by part, so that a bucket can start (and free its staging) before the next part needs one.
  for (const auto& span : spans_of_entry_[entry_index]) {
    if (staged_ && grad.defined()) {
      auto& staging = buckets_[span.bucket].staging;
      if (!staging.defined()) staging = acquire_staging(span.bucket);
      staging.narrow(0, span.flat_begin - params_.reduced().buckets()[span.bucket].begin, span.numel)
          .copy_(grad.narrow(0, span.flat_begin - entry.offset, span.numel));
    }
    if (--buckets_[span.bucket].pending == 0 && reducing_) {
      launch(span.bucket);
      // Without overlap each bucket is reduced before backward goes on (memory stays bounded).
      if (!overlap_) drain();
    }
  }
  poke();
}

void GradientSynchronizer::poke() {
  // MPI progresses non-blocking collectives only inside MPI calls: poke them while computing.
  for (auto& item : in_flight_) {
    if (item.work) item.work->test();
  }
}

void GradientSynchronizer::drain() {
  for (auto& item : in_flight_) complete(item);
  in_flight_.clear();
}

torch::Tensor GradientSynchronizer::acquire_staging(size_t bucket) {
  // Two buffers in use let one bucket fill while the previous one is reduced; a third waits for
  // the oldest reduction in flight to finish (which frees its buffer).
  if (staging_in_use_ >= 2 && !in_flight_.empty()) {
    complete(in_flight_.front());
    in_flight_.erase(in_flight_.begin());
  }
  const int64_t numel = params_.reduced().buckets()[bucket].numel();
  ++staging_in_use_;
  staging_bytes_ += numel * 4;
  peak_staging_bytes_ = std::max(peak_staging_bytes_, staging_bytes_);
  // Parameters that get no gradient this backward contribute zeros.
  return torch::zeros({numel}, torch::TensorOptions().dtype(torch::kFloat).device(params_.compute_device()));
}

// Buckets start in the order their last gradients arrive: the same on every rank, since every
// rank runs the same autograd graph, and it frees staging buffers soonest.
void GradientSynchronizer::launch(size_t bucket) {
  buckets_[bucket].launched = true;
  ++launched_;
  const auto& layout = params_.reduced();
  const auto& range = layout.buckets()[bucket];
  const auto& slice = layout.slices()[bucket];
  torch::Tensor input, output;
  if (staged_) {
    auto& staging = buckets_[bucket].staging;
    if (!staging.defined()) staging = acquire_staging(bucket);
    input = staging.narrow(0, 0, range.numel());
    output = input.narrow(0, slice.flat_begin - range.begin, slice.numel);
  } else {
    input = params_.gradient_sums().narrow(0, range.begin, range.numel());
    output = params_.gradient_sums().narrow(0, slice.flat_begin, slice.numel);
  }
  std::unique_ptr<CommWork> work;
  if (layout.sharded()) work = group_->reduce_scatter_async(input, output, ReduceOp::Avg);
  in_flight_.push_back({bucket, std::move(work)});
}

void GradientSynchronizer::complete(InFlight& item) {
  if (item.work) item.work->wait();
  if (!staged_) return;
  torch::NoGradGuard no_grad;
  const auto& range = params_.reduced().buckets()[item.bucket];
  const auto& slice = params_.reduced().slices()[item.bucket];
  auto& staging = buckets_[item.bucket].staging;
  params_.gradient_shard()
      .narrow(0, slice.shard_begin, slice.numel)
      .add_(staging.narrow(0, slice.flat_begin - range.begin, slice.numel));
  --staging_in_use_;
  staging_bytes_ -= staging.numel() * 4;
  staging = torch::Tensor();
}

void GradientSynchronizer::end_backward() {
  if (reducing_) {
    started_during_backward_ = launched_;
    // Buckets whose parameters got no gradient this backward, in index order.
    for (size_t b = 0; b < buckets_.size(); ++b) {
      if (!buckets_[b].launched) launch(b);
    }
    drain();
    const auto& layout = params_.reduced();
    if (params_.stage() == 0 && layout.sharded()) {
      // Stage 0 keeps whole gradients: every rank's averaged slices, gathered.
      std::vector<std::unique_ptr<CommWork>> gathers;
      auto& sums = params_.gradient_sums();
      for (size_t b = 0; b < buckets_.size(); ++b) {
        const auto& slice = layout.slices()[b];
        gathers.push_back(group_->all_gather_async(sums.narrow(0, slice.flat_begin, slice.numel),
                                                   sums.narrow(0, layout.buckets()[b].begin, layout.buckets()[b].numel())));
      }
      for (auto& work : gathers) work->wait();
    }
  }
  launched_ = 0;
  for (auto& bucket : buckets_) {
    bucket.pending = bucket.size;
    bucket.launched = false;
  }
}

int64_t GradientSynchronizer::bytes_sent_per_step() const {
  const int64_t n = params_.reduced().size();
  if (n <= 1) return 0;
  // A ring reduce-scatter (or all-gather) sends (N-1)/N of the buffer from each rank; stages 2-3
  // pay this once per micro-batch.
  const int64_t one_pass = (n - 1) * params_.numel() * 4 / n;
  return params_.stage() == 0 ? 2 * one_pass : one_pass;
}

}  // namespace cr
