#include "memory/gemini/chunk_manager.h"

#include <fmt/format.h>

#include "core/base/error.h"
#include "memory/weight_source.h"

namespace cr {

ChunkManager::ChunkManager(const ModuleParameters& params, const WeightSource* source, TierMemory& memory,
                           const ChunkLayout& layout, const std::vector<ChunkPlacement>& placement,
                           torch::ScalarType compute_dtype, Communicator* group)
    : memory_(memory),
      entries_(params.entries),
      params_(params.tensors),
      layout_(layout.chunks, group ? group->rank() : 0, group ? group->size() : 1),
      group_(layout_.sharded() ? group : nullptr),
      compute_dtype_(compute_dtype),
      location_(entries_.size()) {
  CR_CHECK(placement.size() == layout.chunks.size(), "{} placements for {} chunks", placement.size(),
           layout.chunks.size());
  torch::NoGradGuard no_grad;
  const bool low_precision = compute_dtype != torch::kFloat;
  size_t entry = 0;
  for (size_t c = 0; c < layout.chunks.size(); ++c) {
    const BucketRange& range = layout.chunks[c];
    std::vector<size_t> members;
    bool outer = false;
    for (; entry < entries_.size() && entries_[entry].offset < range.end; ++entry) {
      location_[entry] = {c, members.size()};
      members.push_back(entry);
      outer = outer || entries_[entry].layer < 0;
    }
    Chunk& chunk = chunks_.emplace_back(Chunk{range, layout_.slices()[c], members,
                                              ChunkTensorStates(c, members.size(), TensorState::Free), placement[c]});
    chunk.outer = outer;
    chunk.pending_grads = static_cast<int>(members.size());
    const int64_t n = chunk.slice.numel;
    const auto fill = [&](torch::Tensor buffer) {
      if (source) {
        fill_flat_range(*source, entries_, chunk.slice.flat_begin, buffer);
      } else {
        buffer.zero_();
      }
      return buffer;
    };
    const std::string name = fmt::format("chunk {}", c);
    const Tier state = chunk.placement.state;
    if (low_precision) {
      chunk.master = fill(memory_.empty(state, n, torch::kFloat, name + " master weights"));
      chunk.weights = memory_.empty(chunk.placement.weights, n, compute_dtype, name + " weights");
      chunk.weights.copy_(chunk.master);
    } else {
      chunk.weights = fill(memory_.empty(chunk.placement.weights, n, torch::kFloat, name + " weights"));
    }
    chunk.grad = memory_.zeros(state, n, torch::kFloat, name + " gradients");
    chunk.exp_avg = memory_.zeros(state, n, torch::kFloat, name + " exp_avg");
    chunk.exp_avg_sq = memory_.zeros(state, n, torch::kFloat, name + " exp_avg_sq");
  }
  // Accumulators record each parameter's shape when created: make them while the shapes are
  // real (a broadcast element of the compute dtype), and keep them, since parameters are empty
  // between uses.
  const auto element = torch::empty({1}, torch::TensorOptions().dtype(compute_dtype).device(memory.device()));
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].set_data(element.expand(entries_[i].shape));
    params_[i].mutable_grad() = torch::Tensor();
    accumulators_.push_back(torch::autograd::impl::grad_accumulator(params_[i]));
  }
  empty_ = torch::empty({0}, element.options());
  for (auto& param : params_) param.set_data(empty_);
}

int64_t ChunkManager::gather_bytes(size_t c) const {
  const Chunk& chunk = chunks_[c];
  if (chunk.full.defined()) return 0;
  if (!layout_.sharded() && chunk.placement.weights == Tier::Device) return 0;
  return chunk.range.numel() * static_cast<int64_t>(c10::elementSize(compute_dtype_));
}

void ChunkManager::start_gather(size_t c) {
  Chunk& chunk = chunks_[c];
  if (chunk.full.defined()) return;
  const int64_t element = static_cast<int64_t>(c10::elementSize(compute_dtype_));
  if (!layout_.sharded() && chunk.placement.weights == Tier::Device) {
    chunk.full = chunk.weights;
    return;
  }
  chunk.full = memory_.empty(Tier::Device, chunk.range.numel(), compute_dtype_, fmt::format("gathering chunk {}", c));
  gathered_bytes_ += chunk.full.numel() * element;
  peak_gathered_ = std::max(peak_gathered_, gathered_bytes_);
  torch::NoGradGuard no_grad;
  const auto own = chunk.full.narrow(0, chunk.slice.flat_begin - chunk.range.begin, chunk.slice.numel);
  own.copy_(chunk.weights);
  if (chunk.placement.weights == Tier::Host) traffic_.host_to_device += chunk.slice.numel * element;
  if (layout_.sharded()) {
    chunk.in_flight.push_back(group_->all_gather_async(own, chunk.full));
    traffic_.gathered += (layout_.size() - 1) * chunk.range.numel() * element / layout_.size();
  }
}

void ChunkManager::gather(size_t c) {
  Chunk& chunk = chunks_[c];
  start_gather(c);
  for (auto& work : chunk.in_flight) work->wait();
  chunk.in_flight.clear();
  if (!chunk.bound) bind(chunk);
}

void ChunkManager::bind(Chunk& chunk) {
  torch::NoGradGuard no_grad;
  for (size_t i : chunk.entries) {
    const FlatEntry& entry = entries_[i];
    params_[i].set_data(chunk.full.narrow(0, entry.offset - chunk.range.begin, entry.numel).view(entry.shape));
  }
  chunk.states.move_all(TensorState::Hold);
  chunk.bound = true;
}

void ChunkManager::unbind(Chunk& chunk) {
  torch::NoGradGuard no_grad;
  for (size_t i : chunk.entries) params_[i].set_data(empty_);
  chunk.states.move_all(TensorState::Free);
  chunk.bound = false;
}

bool ChunkManager::idle(size_t c) const {
  const Chunk& chunk = chunks_[c];
  return chunk.full.defined() && !chunk.placement.keep_gathered && !chunk.staging.defined() &&
         (!chunk.bound || chunk.states.all(TensorState::Hold));
}

void ChunkManager::release(size_t c) {
  Chunk& chunk = chunks_[c];
  if (!chunk.full.defined()) return;
  for (auto& work : chunk.in_flight) work->wait();  // a gather in flight lands before its buffer goes
  chunk.in_flight.clear();
  if (chunk.bound) unbind(chunk);
  if (!chunk.full.is_same(chunk.weights)) {
    gathered_bytes_ -= chunk.full.numel() * static_cast<int64_t>(chunk.full.element_size());
  }
  chunk.full = torch::Tensor();
}

void ChunkManager::stage_gradient(size_t entry_index, const torch::Tensor& grad) {
  const auto [c, position] = location_[entry_index];
  Chunk& chunk = chunks_[c];
  if (!chunk.staging.defined()) {
    chunk.staging = memory_.zeros(Tier::Device, chunk.range.numel(), torch::kFloat, fmt::format("chunk {} gradients", c));
    staging_now_ += staging_bytes(c);
    peak_staging_ = std::max(peak_staging_, staging_now_);
  }
  const FlatEntry& entry = entries_[entry_index];
  torch::NoGradGuard no_grad;
  chunk.staging.narrow(0, entry.offset - chunk.range.begin, entry.numel).copy_(grad.reshape({-1}));
}

void ChunkManager::reduce(size_t c) {
  Chunk& chunk = chunks_[c];
  if (!chunk.staging.defined()) {
    chunk.staging = memory_.zeros(Tier::Device, chunk.range.numel(), torch::kFloat, fmt::format("chunk {} gradients", c));
    staging_now_ += staging_bytes(c);
    peak_staging_ = std::max(peak_staging_, staging_now_);
  }
  torch::NoGradGuard no_grad;
  auto own = chunk.staging.narrow(0, chunk.slice.flat_begin - chunk.range.begin, chunk.slice.numel);
  if (layout_.sharded()) {
    group_->reduce_scatter(chunk.staging, own, ReduceOp::Avg);
    traffic_.reduced += (layout_.size() - 1) * chunk.range.numel() * 4 / layout_.size();
  }
  if (chunk.placement.state == Tier::Host) {
    traffic_.device_to_host += chunk.slice.numel * 4;
    if (memory_.emulated()) own = own.clone();  // the emulated device's bytes really move
  }
  chunk.grad.add_(own.to(chunk.grad.device()));
  chunk.staging = torch::Tensor();
  staging_now_ -= staging_bytes(c);
}

torch::Tensor ChunkManager::moved(const torch::Tensor& tensor, Tier to, const std::string& what) {
  if (!tensor.defined()) return tensor;
  auto target = memory_.empty(to, tensor.numel(), tensor.scalar_type(), what);
  target.copy_(tensor);
  const int64_t bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
  (to == Tier::Device ? traffic_.host_to_device : traffic_.device_to_host) += bytes;
  return target;
}

void ChunkManager::move_weights(size_t c, Tier to) {
  Chunk& chunk = chunks_[c];
  if (chunk.placement.weights == to) return;
  CR_CHECK(!chunk.full.defined(), "chunk {} moves its weights while gathered", c);
  torch::NoGradGuard no_grad;
  chunk.weights = moved(chunk.weights, to, fmt::format("chunk {} weights", c));
  chunk.placement.weights = to;
}

void ChunkManager::move_state(size_t c, Tier to) {
  Chunk& chunk = chunks_[c];
  if (chunk.placement.state == to) return;
  torch::NoGradGuard no_grad;
  for (torch::Tensor* part : {&chunk.master, &chunk.grad, &chunk.exp_avg, &chunk.exp_avg_sq}) {
    *part = moved(*part, to, fmt::format("chunk {} fp32 state", c));
  }
  chunk.placement.state = to;
}

void ChunkManager::zero_grad() {
  for (auto& chunk : chunks_) chunk.grad.zero_();
}

}  // namespace cr
