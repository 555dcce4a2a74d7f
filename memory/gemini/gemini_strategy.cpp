#include "memory/gemini/gemini_strategy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include "core/base/crc32.h"
#include "core/base/error.h"
#include "core/base/strings.h"
#include "kernels/reduction.h"
#include "memory/adamw_optimizer.h"
#include "memory/gemini/heap_meter.h"
#include "memory/owned_state.h"
#include "memory/rank_reduce.h"

namespace cr {
namespace {

bool contains(const std::vector<size_t>& items, size_t item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

void add_unique(std::vector<size_t>& items, size_t item) {
  if (!contains(items, item)) items.push_back(item);
}

double sum_of_squares_of(const torch::Tensor& values) {
  if (values.is_cpu()) return sum_of_squares(values.data_ptr<float>(), values.numel());
  return values.to(torch::kDouble).square().sum().item<double>();
}

}  // namespace

GeminiOptions gemini_options(const ZeroConfig& zero) {
  GeminiOptions options;
  PlacementConfig& p = options.placement;
  p.policy = zero.placement_policy.value_or("cuda");
  p.shard_param_frac = zero.shard_param_frac;
  p.offload_optim_frac = zero.offload_optim_frac;
  p.offload_param_frac = zero.offload_param_frac;
  p.gpu_margin_mem_ratio = zero.gpu_margin_mem_ratio;
  p.warmup_non_model_data_ratio = zero.warmup_non_model_data_ratio;
  p.steady_cuda_cap_ratio = zero.steady_cuda_cap_ratio;
  p.max_prefetch = zero.max_prefetch;
  p.nvme_offload_fraction = zero.nvme_offload_fraction;
  options.nvme_path = zero.nvme_path.value_or("");
  const auto elements = [](double m) { return static_cast<int64_t>(std::llround(m * static_cast<double>(kChunkUnit))); };
  options.chunks.chunk_size = elements(zero.chunk_size_m);
  options.chunks.search_range = elements(zero.search_range_m);
  options.chunks.min_chunk_size = elements(zero.min_chunk_size_m);
  return options;
}

GeminiStrategy::GeminiStrategy(const ModuleParameters& params, const WeightSource* source, int64_t blocks,
                               const GeminiOptions& options, Communicator* group, Communicator* model_parallel)
    : options_(options),
      memory_(options.device, options.device_budget),
      layout_(make_chunk_layout(params.entries, group ? group->size() : 1, options.chunks)),
      group_(group && group->size() > 1 ? group : nullptr),
      model_parallel_(model_parallel),
      numel_(params.numel) {
  const int64_t ranks = group_ ? group_->size() : 1;
  std::vector<int64_t> chunk_elements;
  for (const auto& chunk : layout_.chunks) {
    chunk_elements.push_back(chunk.numel());
    max_shard_.push_back((chunk.numel() + ranks - 1) / ranks);
  }
  std::vector<ChunkPlacement> placement = initial_placement(options.placement, chunk_elements);
  if (layout_.keep_gathered) {
    for (auto& p : placement) p.keep_gathered = true;
  }
  const bool uses_nvme =
      std::any_of(placement.begin(), placement.end(), [](const ChunkPlacement& p) { return p.state == Tier::Nvme; });
  if (uses_nvme) nvme_ = std::make_unique<NvmeStore>(options.nvme_path, group ? group->rank() : 0);
  chunks_ = std::make_unique<ChunkManager>(params, source, memory_, layout_, placement, options.compute_dtype, group_,
                                           nvme_.get());
  nvme_partials_.assign(chunks_->size(), 0.0);
  ChunkUsers users = chunk_users(params.entries, layout_, blocks);
  outer_chunks_ = std::move(users.outer);
  block_chunks_ = std::move(users.blocks);
  for (size_t c = 0; c < chunks_->size(); ++c) {
    if (chunks_->chunk(c).placement.keep_gathered) add_unique(outer_chunks_, c);
  }
  reduced_.assign(chunks_->size(), false);
  for (size_t c = 0; c < chunks_->size(); ++c) {
    segments_.push_back(decay_segments(params.entries, {chunks_->chunk(c).slice}));
  }
  const auto& accumulators = chunks_->grad_accumulators();
  for (size_t i = 0; i < accumulators.size(); ++i) {
    accumulators[i]->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient(i);
          return outputs;
        }));
  }
}

int64_t GeminiStrategy::model_device_bytes() const {
  const int64_t element = static_cast<int64_t>(c10::elementSize(options_.compute_dtype));
  const int64_t state_parts = options_.compute_dtype == torch::kFloat ? 3 : 4;
  int64_t bytes = 0;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    if (chunk.placement.weights == Tier::Device) bytes += max_shard_[c] * element;
    if (chunk.placement.state == Tier::Device) bytes += max_shard_[c] * 4 * state_parts;
    if (chunk.full.defined() && !chunk.full.is_same(chunk.weights)) bytes += chunks_->full_bytes(c);
    if (chunk.staging.defined()) bytes += chunks_->staging_bytes(c);
  }
  return bytes + chunks_->draining_bytes();
}

int64_t GeminiStrategy::room_now() const {
  const int64_t budget = options_.device_budget;
  if (budget == 0) return std::numeric_limits<int64_t>::max();
  if (options_.placement.policy != "auto") return budget;
  if (!training_ || !warmed_up_) return model_data_room(options_.placement, budget, true, 0);
  int64_t forecast = 0;
  if (moment_ < non_model_.size()) {
    forecast = non_model_[moment_];
    if (moment_ + 1 < non_model_.size()) forecast = std::max(forecast, non_model_[moment_ + 1]);
  } else {
    for (int64_t bytes : non_model_) forecast = std::max(forecast, bytes);
  }
  return model_data_room(options_.placement, budget, false, forecast);
}

void GeminiStrategy::make_room(int64_t demand, const std::vector<size_t>& needed, Demand kind) {
  if (options_.device_budget == 0 || demand == 0) return;
  const int64_t room = room_now();
  int64_t used = model_device_bytes();
  if (used + demand <= room) return;
  if (chunks_->draining_bytes() > 0) {  // gradients still draining to the host give their staging back
    chunks_->settle_drains();
    used = model_device_bytes();
    if (used + demand <= room) return;
  }
  std::vector<size_t> candidates;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    if (!chunks_->idle(c) || contains(needed, c) || chunk.full.is_same(chunk.weights)) continue;
    if (stepping_ && contains(outer_chunks_, c)) continue;
    candidates.push_back(c);
  }
  const bool belady = options_.placement.policy == "auto" && training_ && warmed_up_ && moment_ < trace_.size();
  for (size_t c : belady ? eviction_order(candidates, trace_, moment_) : candidates) {
    if (used + demand <= room) break;
    used -= chunks_->full_bytes(c);
    chunks_->release(c);
  }
  if (used + demand <= room) return;
  int64_t gathered = 0, staged = 0;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    if (chunk.full.defined() && !chunk.full.is_same(chunk.weights)) gathered += chunks_->full_bytes(c);
    if (chunk.staging.defined()) staged += chunks_->staging_bytes(c);
  }
  const int64_t resident = used - gathered - staged;
  const std::string what = kind == Demand::Gradients ? fmt::format("chunk {}'s gradients", needed.front())
                                                     : fmt::format("gathering chunks {}", fmt::join(needed, ", "));
  fail("device memory: {} needs {} more, but model data may take {} of the {} device budget ({} placement{}, the rest "
       "kept for activations) and {} "
       "is in use that cannot leave now: {} of chunks gathered for this and the current blocks, {} of gradients being "
       "reduced, {} of weights and fp32 state placed on the device. Raise runtime.device_memory_limit, place more "
       "on the host (zero.placement_policy cpu or auto, zero.offload_*_frac), use smaller chunks (zero.chunk_size_m) "
       "or lower train.micro_batch_size",
       what, human_bytes(static_cast<double>(demand)), human_bytes(static_cast<double>(room)),
       human_bytes(static_cast<double>(options_.device_budget)), options_.placement.policy,
       warmed_up_ ? "" : ", warm-up", human_bytes(static_cast<double>(used)), human_bytes(static_cast<double>(gathered)),
       human_bytes(static_cast<double>(staged)), human_bytes(static_cast<double>(resident)));
}

void GeminiStrategy::prepare(const std::vector<size_t>& needed) {
  int64_t demand = 0;
  for (size_t c : needed) demand += chunks_->gather_bytes(c);
  make_room(demand, needed, Demand::Gather);
  for (size_t c : needed) chunks_->gather(c);
}

void GeminiStrategy::make_staging_room(size_t c) {
  if (!chunks_->chunk(c).staging.defined()) make_room(chunks_->staging_bytes(c), {c}, Demand::Gradients);
}

void GeminiStrategy::prefetch() {
  if (options_.placement.max_prefetch == 0 || !training_ || !warmed_up_) return;
  int64_t used = model_device_bytes();
  const int64_t room = room_now();
  int64_t started = 0;
  for (size_t t = moment_; t < trace_.size() && started < options_.placement.max_prefetch; ++t) {
    for (size_t c : trace_.at(t)) {
      const int64_t bytes = chunks_->gather_bytes(c);
      if (bytes == 0) continue;
      if (started == options_.placement.max_prefetch || used + bytes > room) return;  // prefetching never evicts
      chunks_->start_gather(c);
      used += bytes;
      ++started;
    }
  }
}

void GeminiStrategy::begin_step(bool training) {
  training_ = training;
  stepping_ = true;
  if (training) {
    poisoned_ = false;
    chunks_->zero_grad();
    chunks_->reset_traffic();
    memory_.reset_peaks();
    moment_ = 0;
    warmup_ = !warmed_up_;
    if (warmup_ && measures_non_model()) {
      in_use_baseline_ = memory_in_use(options_.device) - metered_tier_bytes();
    }
  }
  prepare(outer_chunks_);
}

int64_t GeminiStrategy::metered_tier_bytes() const {
  // An emulated device and the host tier share the heap; a GPU's allocator holds the device tier only.
  return memory_.device_bytes() + (memory_.emulated() ? memory_.host_bytes() : 0);
}

void GeminiStrategy::move_block_tensors(int64_t block, TensorState from, TensorState to) {
  for (size_t c : block_chunks_[static_cast<size_t>(block)]) {
    Chunk& chunk = chunks_->chunk(c);
    for (size_t t = 0; t < chunk.entries.size(); ++t) {
      const bool own = chunks_->entries()[chunk.entries[t]].layer == block;
      if (own && chunk.states.state(t) == from) chunk.states.move(t, to);
    }
  }
}

void GeminiStrategy::before_block(int64_t block) {
  const auto& needed = block_chunks_[static_cast<size_t>(block)];
  const bool measuring = warmup_ && measures_non_model();
  if (warmup_) trace_.record(needed);
  if (measuring) {
    non_model_.push_back(
        std::max<int64_t>(0, memory_in_use(options_.device) - metered_tier_bytes() - in_use_baseline_));
  }
  prepare(needed);
  move_block_tensors(block, TensorState::Hold, TensorState::Compute);
  if (measuring) model_at_.push_back(model_device_bytes());
  if (training_) ++moment_;
  prefetch();
}

torch::Tensor GeminiStrategy::after_block(int64_t block, const torch::Tensor& output) {
  move_block_tensors(block, TensorState::Compute, TensorState::Hold);
  auto result = training_ ? with_layer_backward_hook(output, this, block) : output;
  // Static placement releases a chunk once its blocks are done (the next block may share it);
  // auto keeps it until the room is needed.
  if (options_.placement.policy != "auto") {
    const size_t next = static_cast<size_t>(block) + 1;
    for (size_t c : block_chunks_[static_cast<size_t>(block)]) {
      if (contains(outer_chunks_, c) || (next < block_chunks_.size() && contains(block_chunks_[next], c))) continue;
      if (chunks_->idle(c)) chunks_->release(c);
    }
  }
  return result;
}

void GeminiStrategy::before_layer_backward(int64_t layer) { before_block(layer); }

void GeminiStrategy::begin_backward(bool reduces) {
  last_backward_ = reduces;
  std::fill(reduced_.begin(), reduced_.end(), false);
  reduced_in_backward_ = 0;
}

void GeminiStrategy::on_gradient(size_t entry) {
  torch::NoGradGuard no_grad;
  auto& param = chunks_->parameter(entry);
  const auto [c, position] = chunks_->locate(entry);
  Chunk& chunk = chunks_->chunk(c);
  if (param.grad().defined()) {
    make_staging_room(c);
    chunks_->stage_gradient(entry, param.grad());
    param.mutable_grad().reset();
  }
  if (chunk.states.state(position) == TensorState::Hold) chunk.states.move(position, TensorState::Compute);
  chunk.states.move(position, TensorState::HoldAfterBwd);
  chunk.states.move(position, TensorState::ReadyForReduce);
  if (--chunk.pending_grads == 0) {
    finish_reduction(c);
    ++reduced_in_backward_;
  }
}

void GeminiStrategy::settle(size_t c) {
  ChunkTensorStates& states = chunks_->chunk(c).states;
  for (size_t t = 0; t < states.size(); ++t) {
    if (states.state(t) == TensorState::Compute) states.move(t, TensorState::HoldAfterBwd);
    if (states.state(t) == TensorState::HoldAfterBwd) states.move(t, TensorState::ReadyForReduce);
    if (states.state(t) == TensorState::ReadyForReduce) states.move(t, TensorState::Hold);
  }
}

void GeminiStrategy::finish_reduction(size_t c) {
  Chunk& chunk = chunks_->chunk(c);
  make_staging_room(c);
  const torch::Tensor grad = chunks_->reduce(c);
  if (chunks_->on_nvme(c) && last_backward_) nvme_partials_[c] = partial_sum_of_squares(c, grad);
  reduced_[c] = true;
  settle(c);
  chunk.pending_grads = static_cast<int>(chunk.entries.size());
  if (options_.placement.policy != "auto" && !contains(outer_chunks_, c) && chunks_->idle(c)) chunks_->release(c);
}

void GeminiStrategy::end_backward() {
  // Chunks some of whose parameters got no gradient, in index order (as ZeRO's buckets).
  for (size_t c = 0; c < chunks_->size(); ++c) {
    if (!reduced_[c]) finish_reduction(c);
  }
  chunks_->flush();
}

void GeminiStrategy::reduce_gradients() {
  chunks_->settle_drains();  // every host gradient complete before the norm reads it
  release_all();
}

void GeminiStrategy::release_all() {
  for (size_t c = 0; c < chunks_->size(); ++c) {
    if (!chunks_->chunk(c).placement.keep_gathered) chunks_->release(c);
  }
}

void GeminiStrategy::end_step() {
  stepping_ = false;
  release_all();
  if (training_) {
    if (warmup_) end_warmup();
    last_traffic_ = chunks_->traffic_with_times();
  }
  training_ = false;
}

void GeminiStrategy::end_warmup() {
  warmup_ = false;
  warmed_up_ = true;
  if (!measures_non_model()) return;
  // Every rank decides from the same records.
  all_reduce_values(group_, non_model_, ReduceOp::Max, options_.device);
  all_reduce_values(group_, model_at_, ReduceOp::Max, options_.device);
  if (options_.placement.gpu_margin_mem_ratio == 0) return;
  int64_t peak = 0;
  for (size_t t = 0; t < non_model_.size(); ++t) peak = std::max(peak, non_model_[t] + model_at_[t]);
  const int64_t budget = options_.device_budget;
  const int64_t margin = budget == 0 ? std::numeric_limits<int64_t>::max() / 2
                                     : static_cast<int64_t>(static_cast<double>(budget) *
                                                            options_.placement.steady_cuda_cap_ratio) - peak;
  const int64_t element = static_cast<int64_t>(c10::elementSize(options_.compute_dtype));
  const int64_t state_parts = options_.compute_dtype == torch::kFloat ? 3 : 4;
  std::vector<size_t> movable;  // chunks whose state the NVMe tier does not hold
  std::vector<int64_t> moved;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    if (chunks_->on_nvme(c)) continue;
    movable.push_back(c);
    moved.push_back((chunk.placement.weights == Tier::Host ? max_shard_[c] * element : 0) +
                    (chunk.placement.state == Tier::Host ? max_shard_[c] * 4 * state_parts : 0));
  }
  for (size_t i : margin_chunks(options_.placement, margin, moved)) {
    chunks_->move_weights(movable[i], Tier::Device);
    chunks_->move_state(movable[i], Tier::Device);
  }
}

double GeminiStrategy::partial_sum_of_squares(size_t c, const torch::Tensor& grad) const {
  const Chunk& chunk = chunks_->chunk(c);
  const int64_t begin = chunk.slice.flat_begin;
  double sum = 0.0;
  for_each_overlap(chunks_->entries(), begin, chunk.slice.numel, [&](const FlatEntry& entry, int64_t from, int64_t to) {
    // Copies another tensor rank also holds count there only.
    if (entry.slice.primary) sum += sum_of_squares_of(grad.narrow(0, from - begin, to - from));
  });
  return sum;
}

double GeminiStrategy::gradient_norm() {
  std::vector<double> partial(chunks_->size(), 0.0);
  for (size_t c = 0; c < chunks_->size(); ++c) {
    partial[c] = chunks_->on_nvme(c) ? nvme_partials_[c] : partial_sum_of_squares(c, chunks_->chunk(c).grad);
  }
  if (poisoned_) partial[0] = std::numeric_limits<double>::infinity();
  all_reduce_values(group_, partial, ReduceOp::Sum, options_.device);
  double sum = 0.0;
  for (double value : partial) sum += value;
  return std::sqrt(summed_over(model_parallel_, sum));
}

void GeminiStrategy::update(size_t c, AdamStepParams p) {
  Chunk& chunk = chunks_->chunk(c);
  const torch::Device at = chunk.grad.device();
  // The update runs where the fp32 state is; weights placed on the other side of the device
  // travel there and back.
  const bool crosses = (chunk.placement.weights == Tier::Device) != (chunk.placement.state == Tier::Device);
  TierTransfers& transfers = chunks_->transfers();
  for (const auto& [slice, offset, count, decay] : segments_[c]) {
    p.weight_decay = decay ? static_cast<float>(options_.optimizer.weight_decay) : 0.0f;
    auto weights = chunk.weights.narrow(0, offset, count);
    auto local = crosses ? transfers.copied_to(weights, at) : weights;
    auto master = chunk.master.defined() ? chunk.master.narrow(0, offset, count) : local;
    adamw_update(master, chunk.grad.narrow(0, offset, count), chunk.exp_avg.narrow(0, offset, count),
                 chunk.exp_avg_sq.narrow(0, offset, count), chunk.master.defined() ? local : torch::Tensor(), p);
    if (!crosses) continue;
    transfers.copy(weights, local);
    const int64_t bytes = count * static_cast<int64_t>(weights.element_size());
    chunks_->traffic().host_to_device += bytes;
    chunks_->traffic().device_to_host += bytes;
  }
}

StateBuffer& GeminiStrategy::nvme_buffer(size_t which) {
  if (nvme_buffers_.empty()) {
    int64_t largest = 0;
    for (size_t c = 0; c < chunks_->size(); ++c) {
      if (chunks_->on_nvme(c)) largest = std::max(largest, chunks_->chunk(c).slice.numel);
    }
    for (int i = 0; i < 3; ++i) nvme_buffers_.push_back(chunks_->state_buffer(largest));
  }
  return nvme_buffers_[which % nvme_buffers_.size()];
}

void GeminiStrategy::update_nvme_chunks(const AdamStepParams& p) {
  std::vector<size_t> order;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    if (chunks_->on_nvme(c)) order.push_back(c);
  }
  if (order.empty()) return;
  // Three buffers: chunk i is updated while i + 1 is read and i - 1 is written.
  std::vector<std::vector<NvmeStore::Ticket>> loads(order.size()), stores(order.size());
  loads[0] = chunks_->load_state(order[0], nvme_buffer(0), true);
  for (size_t i = 0; i < order.size(); ++i) {
    if (i + 1 < order.size()) {
      if (i >= 2) {
        for (auto ticket : stores[i - 2]) nvme_->wait(ticket);  // its buffer is the next one's
      }
      loads[i + 1] = chunks_->load_state(order[i + 1], nvme_buffer(i + 1), true);
    }
    for (auto ticket : loads[i]) nvme_->wait(ticket);
    update(order[i], p);
    stores[i] = chunks_->store_state(order[i]);
    chunks_->unload(order[i]);
  }
  nvme_->wait_all();
}

void GeminiStrategy::optimizer_step(double lr, double grad_scale) {
  ++optimizer_steps_;
  torch::NoGradGuard no_grad;
  chunks_->transfers().wait_all();  // no copy still reads weights the update writes
  const AdamStepParams p = adam_step_params(options_.optimizer, optimizer_steps_, lr, grad_scale);
  for (size_t c = 0; c < chunks_->size(); ++c) {
    if (!chunks_->on_nvme(c)) update(c, p);
  }
  update_nvme_chunks(p);
  // Chunks kept gathered hold the old weights: gather them again.
  for (size_t c = 0; c < chunks_->size(); ++c) {
    Chunk& chunk = chunks_->chunk(c);
    if (!chunk.placement.keep_gathered || !chunk.full.defined() || chunk.full.is_same(chunk.weights)) continue;
    chunks_->release(c);
    chunks_->gather(c);
  }
}

StateBytes GeminiStrategy::state_bytes() const {
  StateBytes bytes;
  const auto size_of = [](const torch::Tensor& t) {
    return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : int64_t{0};
  };
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    bytes.parameters += size_of(chunk.weights);
    bytes.master_weights += size_of(chunk.master);
    bytes.gradients += size_of(chunk.grad);
    bytes.optimizer_states += size_of(chunk.exp_avg) + size_of(chunk.exp_avg_sq);
  }
  bytes.parameters += chunks_->peak_gathered_bytes();
  bytes.gradients += chunks_->peak_staging_bytes();
  return bytes;
}

GradientTraffic GeminiStrategy::gradient_traffic() const {
  const int64_t n = group_ ? group_->size() : 1;
  return {(n - 1) * numel_ * 4 / n, static_cast<int64_t>(chunks_->size()), reduced_in_backward_};
}

TierUsage GeminiStrategy::tier_usage() const {
  TierUsage usage;
  usage.tiered = true;
  usage.device_budget = options_.device_budget;
  usage.device_peak = memory_.device_peak();
  usage.host_peak = memory_.host_peak();
  usage.host_to_device = last_traffic_.host_to_device;
  usage.device_to_host = last_traffic_.device_to_host;
  usage.nvme_bytes = nvme_ ? nvme_->file_bytes() : 0;
  usage.nvme_read = last_traffic_.nvme_read;
  usage.nvme_written = last_traffic_.nvme_written;
  usage.prefetched = last_traffic_.prefetched;
  usage.copies = last_traffic_.copies;
  return usage;
}

std::vector<torch::Tensor> GeminiStrategy::owned_state() {
  std::vector<torch::Tensor> weights, exp_avg, exp_avg_sq;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    if (chunks_->on_nvme(c)) {
      for (auto ticket : chunks_->load_state(c, nvme_buffer(0), false)) nvme_->wait(ticket);
    }
    // Copies (not views), so that an NVMe chunk's buffer can take the next chunk.
    weights.push_back((chunk.master.defined() ? chunk.master : chunk.weights).to(torch::kCPU, torch::kFloat, false, true));
    exp_avg.push_back(chunk.exp_avg.to(torch::kCPU, torch::kFloat, false, true));
    exp_avg_sq.push_back(chunk.exp_avg_sq.to(torch::kCPU, torch::kFloat, false, true));
    if (chunks_->on_nvme(c)) chunks_->unload(c);
  }
  return {torch::cat(weights), torch::cat(exp_avg), torch::cat(exp_avg_sq)};
}

CheckpointPart GeminiStrategy::checkpoint_part() {
  return owned_state_part(chunks_->entries(), chunks_->layout(), chunks_->layout(), owned_state());
}

void GeminiStrategy::load_checkpoint(SliceReader& reader, int64_t optimizer_steps) {
  const std::vector<torch::Tensor> state = read_owned_state(reader, chunks_->entries(), chunks_->layout());
  torch::NoGradGuard no_grad;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    Chunk& chunk = chunks_->chunk(c);
    const auto part = [&](size_t k) { return state[k].narrow(0, chunk.slice.shard_begin, chunk.slice.numel); };
    const bool nvme = chunks_->on_nvme(c);
    if (nvme) chunks_->view_state(c, nvme_buffer(0));
    if (chunk.master.defined()) chunk.master.copy_(part(0));
    chunk.weights.copy_(part(0));
    chunk.exp_avg.copy_(part(1));
    chunk.exp_avg_sq.copy_(part(2));
    if (nvme) {
      for (auto ticket : chunks_->store_state(c)) nvme_->wait(ticket);
      chunks_->unload(c);
    }
  }
  optimizer_steps_ = optimizer_steps;
}

torch::Tensor GeminiStrategy::fp32_weights(size_t c) {
  const Chunk& chunk = chunks_->chunk(c);  // an NVMe chunk's master weights: loaded by the caller
  return (chunk.master.defined() ? chunk.master : chunk.weights).to(torch::kCPU, torch::kFloat);
}

uint32_t GeminiStrategy::weights_crc32() {
  uint32_t crc = 0;
  for (size_t c = 0; c < chunks_->size(); ++c) {
    const Chunk& chunk = chunks_->chunk(c);
    const bool load = chunks_->on_nvme(c) && options_.compute_dtype != torch::kFloat;
    if (load) {
      for (auto ticket : chunks_->load_state(c, nvme_buffer(0), false)) nvme_->wait(ticket);
    }
    torch::Tensor whole = fp32_weights(c);
    if (group_) {  // one chunk gathered at a time, where the group's transport works
      auto gathered = torch::empty({chunk.range.numel()}, whole.options().device(options_.device));
      group_->all_gather(whole.to(options_.device), gathered);
      whole = gathered.cpu();
    }
    crc = crc32(whole.data_ptr<float>(), static_cast<size_t>(whole.numel()) * sizeof(float), crc);
    if (load) chunks_->unload(c);
  }
  return crc;
}

torch::Tensor GeminiStrategy::full_weights() {
  const auto owned = owned_state()[0].to(options_.device);
  auto full = torch::empty({numel_}, owned.options());
  chunks_->layout().gather(group_, owned, full);
  return full;
}

torch::Tensor GeminiStrategy::local_gradient(const std::string& name) {
  fail("Gemini reduces gradients chunk by chunk as backward produces them: no whole local gradient of {} exists",
       name);
}

void GeminiStrategy::poison_gradients() {
  poisoned_ = true;
  if (!chunks_->on_nvme(0)) chunks_->chunk(0).grad.fill_(std::numeric_limits<float>::infinity());
}

}  // namespace cr
