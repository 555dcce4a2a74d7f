#include "memory/zero_parameters.h"

#include <algorithm>
#include <map>

#include "core/base/error.h"
#include "kernels/reduction.h"
#include "memory/rank_reduce.h"
#include "memory/weight_source.h"
#include "parallel/communicator.h"

namespace cr {
namespace {

double slice_sum_of_squares(const torch::Tensor& values) {
  if (values.is_cpu()) return sum_of_squares(values.data_ptr<float>(), values.numel());
  return values.to(torch::kDouble).square().sum().item<double>();
}

}  // namespace

StateBytes ZeroParameters::predict(const std::vector<FlatEntry>& entries, const ShardLayout& reduced,
                                   torch::ScalarType compute_dtype, int stage, bool overlap, bool master_weights) {
  const ShardLayout owned = stage >= 1 ? reduced : ShardLayout(reduced.buckets(), 0, 1);
  const int64_t total = reduced.total_numel();
  const int64_t shard = owned.shard_numel();
  const int64_t compute = static_cast<int64_t>(c10::elementSize(compute_dtype));
  const bool low_precision = compute_dtype != torch::kFloat;
  StateBytes bytes;
  bytes.parameters = compute * (stage <= 2 ? total : shard);
  if (stage == 3 && reduced.sharded()) {
    int64_t outer = 0, largest_layer = 0;
    std::map<int64_t, int64_t> layers;
    for (const auto& entry : entries) {
      if (entry.layer < 0) outer += entry.numel;
      else largest_layer = std::max(largest_layer, layers[entry.layer] += entry.numel);
    }
    const int64_t whole_layers = std::min<int64_t>(overlap ? 2 : 1, static_cast<int64_t>(layers.size()));
    bytes.parameters += compute * (outer + whole_layers * largest_layer);
  }
  const bool master_is_compute = low_precision ? !master_weights : (stage == 3 || !owned.sharded());
  bytes.master_weights = master_is_compute ? 0 : 4 * shard;
  if (stage <= 1) {
    bytes.gradients = 4 * total;
  } else {
    // Staging holds at most two consecutive buckets: one filling while the one before is
    // reduced, or (without overlap) one waiting for a parameter part that arrives late.
    const auto& buckets = reduced.buckets();
    int64_t staging = 0;
    for (size_t b = 0; b < buckets.size(); ++b) {
      staging = std::max(staging, buckets[b].numel() + (b > 0 ? buckets[b - 1].numel() : 0));
    }
    bytes.gradients = 4 * (shard + staging);
  }
  bytes.optimizer_states = 8 * shard;
  return bytes;
}

ZeroParameters::ZeroParameters(const ModuleParameters& params, const WeightSource* source, torch::Device device,
                               torch::ScalarType compute_dtype, int stage, ShardLayout reduced, Communicator* group,
                               bool master_weights)
    : stage_(stage),
      compute_dtype_(compute_dtype),
      keeps_master_(compute_dtype == torch::kFloat || master_weights),
      reduced_(std::move(reduced)),
      owned_(stage >= 1 ? reduced_ : ShardLayout(reduced_.buckets(), 0, 1)),
      group_(group),
      entries_(params.entries),
      all_primary_(std::all_of(entries_.begin(), entries_.end(), [](const FlatEntry& e) { return e.slice.primary; })),
      params_(params.tensors) {
  CR_CHECK(stage >= 0 && stage <= 3, "ZeRO stage {}", stage);
  CR_CHECK(params.numel == reduced_.total_numel(), "ZeroParameters: a layout of {} elements for {} parameters",
           reduced_.total_numel(), params.numel);
  CR_CHECK(!reduced_.sharded() || (group && group->size() == reduced_.size()), "ZeroParameters: no group");
  torch::NoGradGuard no_grad;
  const auto fp32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const auto compute = fp32.dtype(compute_dtype_);
  // Each buffer takes from the source exactly the part it holds: no rank builds the whole
  // weights unless it keeps them whole.
  const auto fill = [&](torch::Tensor buffer, int64_t flat_begin, int64_t position, int64_t numel) {
    auto part = buffer.narrow(0, position, numel);
    if (source) {
      fill_flat_range(*source, entries_, flat_begin, part);
    } else {
      part.zero_();
    }
  };
  const auto whole = [&](const torch::TensorOptions& options) {
    auto buffer = torch::empty({reduced_.total_numel()}, options);
    fill(buffer, 0, 0, buffer.numel());
    return buffer;
  };
  const auto owned = [&](const torch::TensorOptions& options) {
    auto buffer = torch::empty({owned_.shard_numel()}, options);
    for (const auto& slice : owned_.slices()) fill(buffer, slice.flat_begin, slice.shard_begin, slice.numel);
    return buffer;
  };
  // Each value is taken from the source once where a copy can be derived instead: whole 16-bit
  // weights from a whole fp32 master, an fp32 master from the fp32 compute weights.
  if (keeps_master_ && (low_precision() || stage_ == 3)) master_ = owned(fp32);
  if (stage_ <= 2) {
    compute_full_ = master_.defined() && !owned_.sharded() ? master_.to(compute_dtype_) : whole(compute);
  }
  if (keeps_master_ && !master_.defined()) {
    master_ = owned_.sharded() ? owned_.shard_of(compute_full_) : compute_full_;
  }
  if (stage_ == 3) compute_shard_ = !low_precision() ? master_ : keeps_master_ ? master_.to(compute_dtype_) : owned(compute);
  const bool gradient_views = stage_ <= 1 && !low_precision();
  if (stage_ <= 1) {
    grad_full_ = torch::zeros({reduced_.total_numel()}, fp32);
  } else {
    grad_shard_ = torch::zeros({owned_.shard_numel()}, fp32);
  }
  // Accumulators record each parameter's shape when created: make them while the shapes are
  // real, and keep them alive, since stage 3 empties the parameters between uses.
  // (A dtype change through set_data would also drop the accumulator, so stage 3 switches the
  // parameters to the compute dtype first, as a broadcast element of the right shape.)
  const auto element = torch::empty({1}, compute);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& param = params_[i];
    const auto& entry = entries_[i];
    param.set_data(compute_full_.defined() ? compute_full_.narrow(0, entry.offset, entry.numel).view(entry.shape)
                                           : element.expand(entry.shape));
    param.mutable_grad() =
        gradient_views ? grad_full_.narrow(0, entry.offset, entry.numel).view(entry.shape) : torch::Tensor();
    accumulators_.push_back(torch::autograd::impl::grad_accumulator(param));
  }
  if (stage_ == 3) {
    const auto empty = torch::empty({0}, compute);
    for (auto& param : params_) param.set_data(empty);
  }
}

torch::Tensor ZeroParameters::weights(size_t bucket) {
  const auto& slice = owned_.slices()[bucket];
  if (keeps_master_) return master_.narrow(0, slice.shard_begin, slice.numel);
  return stage_ == 3 ? compute_shard_.narrow(0, slice.shard_begin, slice.numel)
                     : compute_full_.narrow(0, slice.flat_begin, slice.numel);
}

torch::Tensor ZeroParameters::gradient(size_t bucket) {
  const auto& slice = owned_.slices()[bucket];
  return stage_ <= 1 ? grad_full_.narrow(0, slice.flat_begin, slice.numel)
                     : grad_shard_.narrow(0, slice.shard_begin, slice.numel);
}

torch::Tensor ZeroParameters::compute_copy(size_t bucket) {
  if (!low_precision() || !keeps_master_) return {};
  const auto& slice = owned_.slices()[bucket];
  return stage_ == 3 ? compute_shard_.narrow(0, slice.shard_begin, slice.numel)
                     : compute_full_.narrow(0, slice.flat_begin, slice.numel);
}

void ZeroParameters::zero_grad() {
  if (grad_full_.defined()) grad_full_.zero_();
  if (grad_shard_.defined()) grad_shard_.zero_();
}

double ZeroParameters::gradient_sum_of_squares() {
  const int ranks = reduced_.size();
  const auto& buckets = reduced_.buckets();
  // One partial sum per (bucket, rank) slice: stage 0 holds every slice reduced, later stages
  // their own, and the partials are combined in the same order at every stage.
  std::vector<double> partial(buckets.size() * ranks, 0.0);
  for (size_t b = 0; b < buckets.size(); ++b) {
    for (int r = 0; r < ranks; ++r) {
      if (stage_ >= 1 && r != reduced_.rank()) continue;
      const auto [begin, end] = shard_range(buckets[b].numel(), r, ranks);
      const auto values = stage_ <= 1 ? grad_full_.narrow(0, buckets[b].begin + begin, end - begin)
                                      : grad_shard_.narrow(0, reduced_.slices()[b].shard_begin, end - begin);
      if (all_primary_) {
        partial[b * ranks + r] = slice_sum_of_squares(values);
        continue;
      }
      // Copies another tensor rank also holds count there only.
      const int64_t flat_begin = buckets[b].begin + begin;
      for_each_overlap(entries_, flat_begin, end - begin, [&](const FlatEntry& entry, int64_t from, int64_t to) {
        if (entry.slice.primary) partial[b * ranks + r] += slice_sum_of_squares(values.narrow(0, from - flat_begin, to - from));
      });
    }
  }
  if (stage_ >= 1 && reduced_.sharded()) {
    // Every entry is non-zero on one rank only, so the sum is exact.
    all_reduce_values(group_, partial, ReduceOp::Sum, compute_device());
  }
  double total = 0.0;
  for (double value : partial) total += value;
  return total;
}

void ZeroParameters::publish() {
  if (stage_ == 0 || stage_ == 3 || !owned_.sharded()) return;
  if (!low_precision()) {
    torch::NoGradGuard no_grad;
    for (const auto& slice : owned_.slices()) {
      compute_full_.narrow(0, slice.flat_begin, slice.numel).copy_(master_.narrow(0, slice.shard_begin, slice.numel));
    }
  }
  gather_compute();
}

void ZeroParameters::gather_compute() {
  if (stage_ == 0 || stage_ == 3 || !owned_.sharded()) return;
  std::vector<std::unique_ptr<CommWork>> works;
  const auto& buckets = owned_.buckets();
  for (size_t b = 0; b < buckets.size(); ++b) {
    const auto& slice = owned_.slices()[b];
    works.push_back(group_->all_gather_async(compute_full_.narrow(0, slice.flat_begin, slice.numel),
                                             compute_full_.narrow(0, buckets[b].begin, buckets[b].numel())));
  }
  for (auto& work : works) work->wait();
}

torch::Tensor ZeroParameters::full_master() {
  if (!keeps_master_) {
    // The compute weights are the weights: whole at stages 0-2, gathered at stage 3.
    if (compute_full_.defined()) return compute_full_.to(torch::kFloat);
    auto full = torch::empty({numel()}, compute_shard_.options());
    owned_.gather(group_, compute_shard_, full);
    return full.to(torch::kFloat);
  }
  if (!owned_.sharded()) return master_;
  auto full = torch::empty({numel()}, master_.options());
  owned_.gather(group_, master_, full);
  return full;
}

torch::Tensor ZeroParameters::owned_weights() const {
  if (keeps_master_) return master_;
  if (stage_ == 3) return compute_shard_.to(torch::kFloat);
  return (owned_.sharded() ? owned_.shard_of(compute_full_) : compute_full_).to(torch::kFloat);
}

void ZeroParameters::load_owned_weights(const torch::Tensor& owned) {
  torch::NoGradGuard no_grad;
  CR_CHECK(owned.numel() == owned_.shard_numel(), "owned weights: {} elements for a shard of {}", owned.numel(),
           owned_.shard_numel());
  if (keeps_master_) master_.copy_(owned);
  // Shard space equals flat space when the layout is not sharded, so shard_begin serves both.
  for (const auto& slice : owned_.slices()) {
    const auto values = owned.narrow(0, slice.shard_begin, slice.numel);
    if (stage_ == 3) {
      if (!compute_shard_.is_same(master_)) compute_shard_.narrow(0, slice.shard_begin, slice.numel).copy_(values);
    } else if (!compute_full_.is_same(master_)) {
      compute_full_.narrow(0, slice.flat_begin, slice.numel).copy_(values);
    }
  }
  gather_compute();
}

int64_t ZeroParameters::compute_bytes() const {
  const auto& compute = compute_full_.defined() ? compute_full_ : compute_shard_;
  return compute.numel() * static_cast<int64_t>(compute.element_size());
}

int64_t ZeroParameters::gradient_bytes() const {
  const auto& grad = grad_full_.defined() ? grad_full_ : grad_shard_;
  return grad.numel() * static_cast<int64_t>(sizeof(float));
}

int64_t ZeroParameters::master_bytes() const {
  const bool is_compute = !keeps_master_ || master_.is_same(compute_full_) || master_.is_same(compute_shard_);
  return is_compute ? 0 : master_.numel() * static_cast<int64_t>(sizeof(float));
}

}  // namespace cr
