#include "memory/gemini/chunk_manager.h"

#include <fmt/format.h>

#include "core/base/error.h"
#include "memory/weight_source.h"

namespace cr {

ChunkManager::ChunkManager(const ModuleParameters& params, const WeightSource* source, TierMemory& memory,
                           const ChunkLayout& layout, const std::vector<ChunkPlacement>& placement,
                           torch::ScalarType compute_dtype, Communicator* group, NvmeStore* nvme)
    : memory_(memory),
      nvme_(nvme),
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
    for (; entry < entries_.size() && entries_[entry].offset < range.end; ++entry) {
      location_[entry] = {c, members.size()};
      members.push_back(entry);
    }
    Chunk& chunk = chunks_.emplace_back(c, range, layout_.slices()[c], members, placement[c]);
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
    if (state == Tier::Nvme) {
      CR_CHECK(nvme_, "chunk {}: its state is placed on the NVMe tier, which has no file", c);
      // fp32 compute keeps no master region: the weights are the master.
      for (const char* part : {"master weights", "gradients", "exp_avg", "exp_avg_sq"}) {
        const bool unused = !low_precision && chunk.regions.empty();
        chunk.regions.push_back(unused ? SIZE_MAX : nvme_->add_region(n * 4, fmt::format("chunk {} {}", c, part)));
      }
      if (low_precision) {  // the master weights go to the file once, through a host buffer
        StateBuffer buffer = state_buffer(n);
        const auto master = fill(buffer.parts[0].narrow(0, 0, n));
        chunk.weights = memory_.empty(chunk.placement.weights, n, compute_dtype, name + " weights");
        chunk.weights.copy_(master);
        nvme_->wait(nvme_->write(chunk.regions[0], buffer.parts[0].data_ptr()));
        traffic_.nvme_written += nvme_->region_bytes(chunk.regions[0]);
      } else {
        chunk.weights = fill(memory_.empty(chunk.placement.weights, n, torch::kFloat, name + " weights"));
      }
      continue;
    }
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

int64_t ChunkManager::full_bytes(size_t c) const {
  return chunks_[c].range.numel() * static_cast<int64_t>(c10::elementSize(compute_dtype_));
}

int64_t ChunkManager::gather_bytes(size_t c) const {
  const Chunk& chunk = chunks_[c];
  if (chunk.full.defined()) return 0;
  if (!layout_.sharded() && chunk.placement.weights == Tier::Device) return 0;
  return full_bytes(c);
}

void ChunkManager::start_gather(size_t c) {
  if (gather_bytes(c) > 0) ++traffic_.prefetched;
  begin_gather(c, true);
}

void ChunkManager::begin_gather(size_t c, bool ahead) {
  Chunk& chunk = chunks_[c];
  if (chunk.full.defined()) return;
  const int64_t element = static_cast<int64_t>(c10::elementSize(compute_dtype_));
  if (!layout_.sharded() && chunk.placement.weights == Tier::Device) {
    chunk.full = chunk.weights;
    return;
  }
  chunk.full = memory_.empty(Tier::Device, chunk.range.numel(), compute_dtype_, fmt::format("gathering chunk {}", c));
  gathered_bytes_ += full_bytes(c);
  peak_gathered_ = std::max(peak_gathered_, gathered_bytes_);
  torch::NoGradGuard no_grad;
  const auto own = chunk.full.narrow(0, chunk.slice.flat_begin - chunk.range.begin, chunk.slice.numel);
  if (chunk.placement.weights == Tier::Host) {
    traffic_.host_to_device += chunk.slice.numel * element;
    // The all-gather sends what the copy wrote, and only this thread may start it: a sharded
    // chunk's copy runs here, ahead of its all-gather.
    if (ahead && !layout_.sharded()) {
      chunk.copying = transfers_.start(own, chunk.weights);
    } else {
      transfers_.copy(own, chunk.weights);
    }
  } else {
    own.copy_(chunk.weights);
  }
  if (layout_.sharded()) chunk.in_flight.push_back(group_->all_gather_async(own, chunk.full));
}

void ChunkManager::land(Chunk& chunk) {
  transfers_.wait(chunk.copying);
  chunk.copying = 0;
  for (auto& work : chunk.in_flight) work->wait();
  chunk.in_flight.clear();
}

void ChunkManager::gather(size_t c) {
  Chunk& chunk = chunks_[c];
  begin_gather(c, false);
  land(chunk);
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
  land(chunk);  // a gather in flight lands before its buffer goes
  if (chunk.bound) unbind(chunk);
  if (!chunk.full.is_same(chunk.weights)) gathered_bytes_ -= full_bytes(c);
  chunk.full = torch::Tensor();
}

torch::Tensor& ChunkManager::staging(size_t c) {
  Chunk& chunk = chunks_[c];
  if (!chunk.staging.defined()) {
    chunk.staging = memory_.zeros(Tier::Device, chunk.range.numel(), torch::kFloat, fmt::format("chunk {} gradients", c));
    staging_now_ += staging_bytes(c);
    peak_staging_ = std::max(peak_staging_, staging_now_);
  }
  return chunk.staging;
}

void ChunkManager::stage_gradient(size_t entry_index, const torch::Tensor& grad) {
  const size_t c = location_[entry_index].first;
  const FlatEntry& entry = entries_[entry_index];
  torch::NoGradGuard no_grad;
  staging(c).narrow(0, entry.offset - chunks_[c].range.begin, entry.numel).copy_(grad.reshape({-1}));
}

torch::Tensor ChunkManager::reduce(size_t c) {
  Chunk& chunk = chunks_[c];
  torch::NoGradGuard no_grad;
  auto own = staging(c).narrow(0, chunk.slice.flat_begin - chunk.range.begin, chunk.slice.numel);
  if (layout_.sharded()) group_->reduce_scatter(chunk.staging, own, ReduceOp::Avg);
  if (chunk.placement.state != Tier::Device) traffic_.device_to_host += chunk.slice.numel * 4;
  torch::Tensor grad = chunk.grad;
  if (chunk.placement.state == Tier::Host) {
    // Drains to the host behind the rest of backward, its staging counted until settle_drains().
    chunk.draining = transfers_.start_accumulate(grad, own);
  } else if (on_nvme(c)) {
    own = transfers_.copied_to(own, torch::kCPU);
    // Read, add, write back; at most two writes in flight, each holding its buffer.
    const size_t region = chunk.regions[1];
    grad = memory_.empty(Tier::Host, nvme_->region_bytes(region) / 4, torch::kFloat, fmt::format("chunk {} gradients", c));
    if (chunk.grad_zero) {
      grad.zero_();
    } else {
      nvme_->wait(nvme_->read(region, grad.data_ptr()));
      traffic_.nvme_read += nvme_->region_bytes(region);
    }
    grad.narrow(0, 0, chunk.slice.numel).add_(own);
    chunk.grad_zero = false;
    if (gradient_writes_.size() >= 2) {
      nvme_->wait(gradient_writes_.front().first);
      gradient_writes_.erase(gradient_writes_.begin());
    }
    gradient_writes_.emplace_back(nvme_->write(region, grad.data_ptr()), grad);
    traffic_.nvme_written += nvme_->region_bytes(region);
    grad = grad.narrow(0, 0, chunk.slice.numel);
  } else {
    grad.add_(own);
  }
  chunk.staging = torch::Tensor();
  staging_now_ -= staging_bytes(c);
  return grad;
}

int64_t ChunkManager::draining_bytes() const {
  int64_t bytes = 0;
  for (const Chunk& chunk : chunks_) {
    if (chunk.draining != 0) bytes += chunk.range.numel() * 4;
  }
  return bytes;
}

void ChunkManager::settle_drains() {
  TierTransfers::Ticket last = 0;
  for (Chunk& chunk : chunks_) {
    last = std::max(last, chunk.draining);
    chunk.draining = 0;
  }
  transfers_.wait(last);  // the worker runs in order: every earlier drain is done too
}

StateBuffer ChunkManager::state_buffer(int64_t shard_numel) {
  const int64_t floats = (shard_numel * 4 + kNvmeBlock - 1) / kNvmeBlock * kNvmeBlock / 4;
  StateBuffer buffer;
  for (size_t k = compute_dtype_ == torch::kFloat ? 1 : 0; k < 4; ++k) {  // fp32: the weights are the master
    buffer.parts[k] = memory_.empty(Tier::Host, floats, torch::kFloat, "NVMe state buffer");
  }
  return buffer;
}

void ChunkManager::view_state(size_t c, StateBuffer& buffer) {
  Chunk& chunk = chunks_[c];
  CR_CHECK(on_nvme(c), "chunk {}'s state is not on the NVMe tier", c);
  const int64_t n = chunk.slice.numel;
  if (compute_dtype_ != torch::kFloat) chunk.master = buffer.parts[0].narrow(0, 0, n);
  chunk.grad = buffer.parts[1].narrow(0, 0, n);
  chunk.exp_avg = buffer.parts[2].narrow(0, 0, n);
  chunk.exp_avg_sq = buffer.parts[3].narrow(0, 0, n);
}

std::vector<NvmeStore::Ticket> ChunkManager::load_state(size_t c, StateBuffer& buffer, bool with_grad) {
  view_state(c, buffer);
  Chunk& chunk = chunks_[c];
  std::vector<NvmeStore::Ticket> tickets;
  for (size_t k = 0; k < 4; ++k) {
    if ((k == 0 && !chunk.master.defined()) || (k == 1 && !with_grad)) continue;
    if ((k == 1 && chunk.grad_zero) || (k >= 2 && chunk.moments_zero)) {
      buffer.parts[k].zero_();
    } else {
      tickets.push_back(nvme_->read(chunk.regions[k], buffer.parts[k].data_ptr()));
      traffic_.nvme_read += nvme_->region_bytes(chunk.regions[k]);
    }
  }
  return tickets;
}

std::vector<NvmeStore::Ticket> ChunkManager::store_state(size_t c) {
  Chunk& chunk = chunks_[c];
  std::vector<NvmeStore::Ticket> tickets;
  for (size_t k : {0, 2, 3}) {
    const torch::Tensor& part = k == 0 ? chunk.master : k == 2 ? chunk.exp_avg : chunk.exp_avg_sq;
    if (!part.defined()) continue;
    tickets.push_back(nvme_->write(chunk.regions[k], part.data_ptr()));
    traffic_.nvme_written += nvme_->region_bytes(chunk.regions[k]);
  }
  chunk.moments_zero = false;
  return tickets;
}

void ChunkManager::unload(size_t c) {
  Chunk& chunk = chunks_[c];
  chunk.master = chunk.grad = chunk.exp_avg = chunk.exp_avg_sq = torch::Tensor();
}

void ChunkManager::flush() {
  if (!nvme_) return;
  for (auto& [ticket, buffer] : gradient_writes_) nvme_->wait(ticket);
  gradient_writes_.clear();
}

torch::Tensor ChunkManager::moved(const torch::Tensor& tensor, Tier to, const std::string& what) {
  if (!tensor.defined()) return tensor;
  auto target = memory_.empty(to, tensor.numel(), tensor.scalar_type(), what);
  transfers_.copy(target, tensor);
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
  CR_CHECK(!on_nvme(c) && to != Tier::Nvme, "chunk {}: state moves to and from the NVMe tier are not supported", c);
  torch::NoGradGuard no_grad;
  for (torch::Tensor* part : {&chunk.master, &chunk.grad, &chunk.exp_avg, &chunk.exp_avg_sq}) {
    *part = moved(*part, to, fmt::format("chunk {} fp32 state", c));
  }
  chunk.placement.state = to;
}

ChunkTraffic ChunkManager::traffic_with_times() const {
  ChunkTraffic traffic = traffic_;
  traffic.copies = transfers_.times();
  return traffic;
}

void ChunkManager::reset_traffic() {
  traffic_ = {};
  transfers_.reset_times();
}

void ChunkManager::zero_grad() {
  for (auto& chunk : chunks_) {
    chunk.grad_zero = true;
    if (chunk.placement.state != Tier::Nvme) chunk.grad.zero_();
  }
}

}  // namespace cr
