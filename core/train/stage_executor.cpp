#include "core/train/stage_executor.h"

#include <algorithm>
#include <set>
#include <thread>

#include <fmt/ranges.h>

#include "core/base/error.h"
#include "memory/parameter_strategy.h"
#include "models/activation_checkpoint.h"
#include "models/mixed_precision.h"
#include "parallel/communicator.h"

namespace cr {
namespace {

// Tags of the tied embedding's two messages, above every pipeline_tag().
constexpr int kTiedWeightTag = 32766;
constexpr int kTiedGradientTag = 32767;

using TensorSet = std::set<const void*>;

void insert(TensorSet& set, const torch::Tensor& tensor) { set.insert(tensor.unsafeGetTensorImpl()); }
bool contains(const TensorSet& set, const torch::Tensor& tensor) { return set.count(tensor.unsafeGetTensorImpl()) > 0; }

// The tied output embedding is lent to the last stage only when that is another rank.
bool lends_across_stages(const CausalLMImpl& model, const StageLayout& layout) {
  return model.spec().tied_embeddings && layout.stages > 1;
}

}  // namespace

std::function<bool(const torch::Tensor&)> owned_by_stage(CausalLMImpl& model, const StageLayout& layout) {
  const auto blocks = model.blocks()->children();
  TensorSet in_blocks, head, owned;
  for (const auto& block : blocks) {
    for (const auto& p : block->parameters()) insert(in_blocks, p);
  }
  for (const auto& p : model.head_parameters()) insert(head, p);
  const torch::Tensor output = model.output_embedding_weight();
  const bool tied = model.spec().tied_embeddings;
  for (const StageChunk& chunk : layout.chunks) {
    for (int64_t b = chunk.first_block; b < chunk.last_block; ++b) {
      for (const auto& p : blocks[static_cast<size_t>(b)]->parameters()) insert(owned, p);
    }
    for (const auto& p : model.parameters()) {
      const bool embedding = !contains(in_blocks, p) && (!contains(head, p) || (tied && p.is_same(output)));
      if (chunk.embeds && embedding) insert(owned, p);
      if (chunk.heads && contains(head, p) && !(p.is_same(output) && lends_across_stages(model, layout))) {
        insert(owned, p);
      }
    }
  }
  return [owned](const torch::Tensor& tensor) { return contains(owned, tensor); };
}

StageExecutor::StageExecutor(CausalLMImpl& model, ParameterStrategy& strategy, StageLayout layout,
                             const PipelineLinks& links, Communicator* pipeline_host, torch::Device device,
                             torch::ScalarType compute_dtype, int64_t micro_batches, int64_t rows, int64_t seq_len,
                             const std::string& checkpointing)
    : model_(model),
      strategy_(strategy),
      layout_(std::move(layout)),
      links_(links),
      pipeline_host_(pipeline_host),
      device_(device),
      activation_dtype_(activation_dtype(compute_dtype, device)),
      dropout_(model.spec().dropout > 0),
      recompute_blocks_(checkpointing == "full"),
      recompute_attention_(checkpointing == "selective"),
      micro_batches_(micro_batches) {
  CR_CHECK(layout_.stages == 1 || pipeline_host_, "a pipeline of {} stages needs its group",
           layout_.stages);
  // Between blocks a rank holds its part of the sequence: split_gather splits it over the tensor
  // group, all_to_all and ring_attn over the sequence group.
  const TensorParallel& tp = model.tensor_parallel();
  const int64_t split = (tp.sequence_parallel ? tp.size : 1) * tp.sequence_size;
  activation_shape_ = {rows, seq_len / split, model.spec().d_model};
  if (tp.grid) {
    // A grid (2d, 2.5d, 3d): the residual stream's batch part and hidden column.
    activation_shape_ = {rows / tp.grid->batch_parts(), seq_len, model.spec().d_model / tp.grid->q()};
  }
  if (const auto cost = artificial_stage_cost()) {
    // A stage's cost, shared by its chunks.
    const auto chunks = static_cast<double>(layout_.chunks.size());
    extra_forward_s_ = cost->forward_s / chunks;
    extra_backward_s_ = cost->backward_s / chunks;
  }
  if (!lends_across_stages(model, layout_)) return;
  tied_weight_ = model.output_embedding_weight();
  for (const auto& item : model.named_parameters()) {
    if (item.value().is_same(tied_weight_)) tied_name_ = item.key();
  }
  lends_embedding_ = layout_.chunks.front().embeds;
  borrows_embedding_ = holds_loss();
  if (borrows_embedding_) {
    // The strategy does not own it here: it gets storage for the weights lent each step.
    tied_weight_.set_data(torch::empty(tied_weight_.sizes(), torch::TensorOptions().dtype(compute_dtype).device(device)));
    tied_gradient_ = torch::zeros(tied_weight_.sizes(), torch::TensorOptions().dtype(torch::kFloat).device(device));
  }
}

StageExecutor::~StageExecutor() = default;

const StageChunk& StageExecutor::chunk(const Instruction& instruction) const {
  return layout_.chunks.at(static_cast<size_t>(instruction.chunk));
}

size_t StageExecutor::slot_index(const Instruction& instruction) const {
  return static_cast<size_t>(instruction.micro_batch) * layout_.chunks.size() + static_cast<size_t>(instruction.chunk);
}

StageExecutor::Slot& StageExecutor::slot(const Instruction& instruction) { return slots_.at(slot_index(instruction)); }

void StageExecutor::lend_embedding() {
  torch::NoGradGuard no_grad;
  const auto last = static_cast<int>(layout_.stages - 1);
  if (lends_embedding_) send(tied_weight_.detach(), PipelineDirection::Previous, last, kTiedWeightTag);
  if (borrows_embedding_) recv(tied_weight_.detach(), PipelineDirection::Previous, 0, kTiedWeightTag);
}

template <typename Work>
void StageExecutor::compute(double extra_s, bool backward, Work work) {
  const auto start = std::chrono::steady_clock::now();
  if (extra_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(extra_s));
  work();
  const auto end = std::chrono::steady_clock::now();
  busy_s_ += std::chrono::duration<double>(end - start).count();
  if (backward) flushed_s_ = std::chrono::duration<double>(end - step_start_).count();
}

void StageExecutor::begin_step() {
  step_start_ = std::chrono::steady_clock::now();
  busy_s_ = flushed_s_ = 0;
  slots_.assign(static_cast<size_t>(micro_batches_) * layout_.chunks.size(), Slot{});
  deferred_.assign(slots_.size(), DeferredWeightGradients{});
  batches_.assign(static_cast<size_t>(micro_batches_), {});
  losses_.assign(static_cast<size_t>(micro_batches_), {});
  head_backwards_ = 0;
  if (borrows_embedding_) tied_gradient_.zero_();
  lend_embedding();
}

void StageExecutor::begin_evaluation() { lend_embedding(); }

void StageExecutor::set_batch(int64_t micro_batch, torch::Tensor inputs, torch::Tensor targets) {
  batches_.at(static_cast<size_t>(micro_batch)) = {std::move(inputs), std::move(targets)};
}

torch::Tensor StageExecutor::run_chunk(const StageChunk& chunk, torch::Tensor x, std::optional<uint64_t> seed) {
  for (int64_t block = chunk.first_block; block < chunk.last_block; ++block) {
    strategy_.before_block(block);
    if (seed) torch::manual_seed(*seed * 1000003u + static_cast<uint64_t>(block) + 1);
    if (recompute_blocks_ && torch::GradMode::is_enabled()) {
      x = recompute_in_backward(
          [this, block](const std::vector<torch::Tensor>& in) { return model_.run_blocks(in[0], block, block + 1); },
          {x}, dropout_);
    } else {
      x = model_.run_blocks(x, block, block + 1);
    }
    x = strategy_.after_block(block, x);
  }
  return x;
}

void StageExecutor::forward(const Instruction& instruction, uint64_t seed) {
  const StageChunk& part = chunk(instruction);
  Slot& s = slot(instruction);
  const auto& [inputs, targets] = batches_.at(static_cast<size_t>(instruction.micro_batch));
  const std::optional<uint64_t> dropout_seed = dropout_ ? std::optional<uint64_t>(seed) : std::nullopt;
  compute(extra_forward_s_, false, [&] {
    std::optional<SelectiveRecompute> selective;
    if (recompute_attention_) selective.emplace();
    torch::Tensor x;
    if (part.embeds) {
      if (dropout_seed) torch::manual_seed(*dropout_seed);
      x = model_.embed(inputs);
    } else {
      x = s.input;
    }
    x = run_chunk(part, x, dropout_seed);
    s.output = part.heads ? model_.head_loss(x, targets) : x;
  });
}

void StageExecutor::take_tied_gradient() {
  // The last stage's share of the tied embedding's gradient joins this stage's before the
  // reduction over the data-parallel replicas starts.
  auto returned = torch::empty(tied_weight_.sizes(), torch::TensorOptions().dtype(torch::kFloat).device(device_));
  recv(returned, PipelineDirection::Next, static_cast<int>(layout_.stages - 1), kTiedGradientTag);
  strategy_.local_gradient(tied_name_).add_(returned);
}

void StageExecutor::backward(const Instruction& instruction, bool reduces, double loss_multiplier) {
  const StageChunk& part = chunk(instruction);
  Slot& s = slot(instruction);
  if (lends_embedding_ && reduces) take_tied_gradient();
  const bool split = instruction.op == Op::BackwardInput;
  strategy_.begin_backward(reduces);
  compute(split ? extra_backward_s_ / 2 : extra_backward_s_, true, [&] {
    std::optional<WeightGradientDeferral> deferral;
    if (split) deferral.emplace(deferred_.at(slot_index(instruction)));
    if (part.heads) {
      (s.output * loss_multiplier).backward();
      losses_.at(static_cast<size_t>(instruction.micro_batch)) = s.output.detach();
    } else {
      s.output.backward(s.output_gradient);
    }
  });
  strategy_.end_backward();
  if (!part.embeds) s.input_gradient = s.input.grad();
  s.input = s.output = s.output_gradient = torch::Tensor();
  if (part.heads && borrows_embedding_) {
    tied_gradient_.add_(tied_weight_.grad());
    tied_weight_.mutable_grad() = torch::Tensor();
    if (++head_backwards_ == micro_batches_) send(tied_gradient_, PipelineDirection::Next, 0, kTiedGradientTag);
  }
}

void StageExecutor::backward_weights(const Instruction& instruction, bool reduces) {
  if (lends_embedding_ && reduces) take_tied_gradient();
  strategy_.begin_backward(reduces);
  compute(extra_backward_s_ / 2, true, [&] { deferred_.at(slot_index(instruction)).run(); });
  strategy_.end_backward();
}

torch::Tensor StageExecutor::empty_activation() const {
  return torch::empty(activation_shape_, torch::TensorOptions().dtype(activation_dtype_).device(device_));
}

void StageExecutor::send(torch::Tensor tensor, PipelineDirection direction, int peer, int tag) {
  const int stage = pipeline_host_->rank();
  CR_CHECK(peer == pipeline_neighbour(stage, direction, static_cast<int>(layout_.stages)),
           "stage {} sends to stage {}, not its neighbour", stage, peer);
  // Completed sends are dropped as new ones start, so at most a schedule's in-flight count waits.
  sends_.erase(std::remove_if(sends_.begin(), sends_.end(), [](const auto& work) { return work->test(); }),
               sends_.end());
  sends_.push_back(links_.from(stage, direction).send_async(std::move(tensor), peer, tag));
}

void StageExecutor::recv(torch::Tensor tensor, PipelineDirection direction, int peer, int tag) {
  CR_CHECK(pipeline_neighbour(peer, direction, static_cast<int>(layout_.stages)) == pipeline_host_->rank(),
           "stage {} receives from stage {}, not its neighbour", pipeline_host_->rank(), peer);
  links_.from(peer, direction).recv(std::move(tensor), peer, tag);
}

void StageExecutor::send_activation(const Instruction& instruction) {
  const StageChunk& part = chunk(instruction);
  const torch::Tensor output = slot(instruction).output.detach();
  CR_CHECK(output.sizes().vec() == activation_shape_ && output.scalar_type() == activation_dtype_,
           "stage activation {} {} differs from the layout's {} {}", output.sizes(), c10::toString(output.scalar_type()),
           fmt::join(activation_shape_, ", "), c10::toString(activation_dtype_));
  send(output, PipelineDirection::Next, part.next,
       pipeline_tag(instruction.micro_batch, part.position, layout_.virtual_stages, false));
}

void StageExecutor::recv_activation(const Instruction& instruction) {
  const StageChunk& part = chunk(instruction);
  Slot& s = slot(instruction);
  s.input = empty_activation();
  recv(s.input, PipelineDirection::Next, part.previous,
       pipeline_tag(instruction.micro_batch, part.position - 1, layout_.virtual_stages, false));
  s.input.requires_grad_(true);
}

void StageExecutor::send_gradient(const Instruction& instruction) {
  const StageChunk& part = chunk(instruction);
  Slot& s = slot(instruction);
  send(std::move(s.input_gradient), PipelineDirection::Previous, part.previous,
       pipeline_tag(instruction.micro_batch, part.position - 1, layout_.virtual_stages, true));
}

void StageExecutor::recv_gradient(const Instruction& instruction) {
  const StageChunk& part = chunk(instruction);
  Slot& s = slot(instruction);
  s.output_gradient = empty_activation();
  recv(s.output_gradient, PipelineDirection::Previous, part.next,
       pipeline_tag(instruction.micro_batch, part.position, layout_.virtual_stages, true));
}

void StageExecutor::wait_for_sends() {
  for (auto& work : sends_) work->wait();
  sends_.clear();
}

double StageExecutor::mean_loss() {
  double sum = 0.0;
  if (holds_loss()) {
    for (const auto& loss : losses_) sum += loss.item<double>();
  }
  return from_last_stage(sum / static_cast<double>(micro_batches_));
}

double StageExecutor::from_last_stage(double value) {
  if (!pipeline_host_) return value;
  auto t = torch::tensor({value}, torch::kDouble);
  pipeline_host_->broadcast(t, static_cast<int>(layout_.stages - 1));
  return t.item<double>();
}

double StageExecutor::measured_bubble() {
  if (!pipeline_host_) return 0.0;
  const std::vector<double> times = from_every_stage({busy_s_, flushed_s_});
  double busy = 0, span = 0;
  for (size_t i = 0; i < times.size(); i += 2) {
    busy += times[i];
    span = std::max(span, times[i + 1]);
  }
  const auto stages = static_cast<double>(times.size() / 2);
  return busy > 0 ? (stages * span - busy) / busy : 0.0;
}

std::vector<double> StageExecutor::from_every_stage(std::vector<double> values) {
  if (!pipeline_host_) return values;
  const auto n = static_cast<int64_t>(values.size());
  auto mine = torch::tensor(values, torch::kDouble);
  auto all = torch::empty({n * pipeline_host_->size()}, torch::kDouble);
  pipeline_host_->all_gather(mine, all);
  return {all.data_ptr<double>(), all.data_ptr<double>() + all.numel()};
}

torch::Tensor StageExecutor::forward_only(const torch::Tensor& inputs, const torch::Tensor& targets) {
  torch::Tensor loss;
  for (const StageChunk& part : layout_.chunks) {
    torch::Tensor x;
    if (part.embeds) {
      x = model_.embed(inputs);
    } else {
      x = empty_activation();
      recv(x, PipelineDirection::Next, part.previous,
           pipeline_tag(0, part.position - 1, layout_.virtual_stages, false));
    }
    x = run_chunk(part, x, std::nullopt);
    if (part.heads) {
      loss = model_.head_loss(x, targets);
    } else {
      send(x, PipelineDirection::Next, part.next, pipeline_tag(0, part.position, layout_.virtual_stages, false));
    }
  }
  wait_for_sends();
  return loss;
}

}  // namespace cr
