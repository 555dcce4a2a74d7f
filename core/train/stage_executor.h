// The compute and communication instructions of a step's program (schedule.h) on this rank's
// part of the model: its pipeline stage's chunks (pipeline_stage.h), or the whole model without a
// pipeline. Forward runs a chunk's blocks with the ParameterStrategy around each; the chunk that
// embeds starts from the tokens, the others from the activation received; the chunk that heads
// ends in the loss. Backward starts from the loss or from the gradient received. Sends are
// non-blocking (finished at the end of the step), receives block; shapes follow from the layout,
// so no message carries metadata. Messages travel on the pipeline links of their direction
// (parallel/pipeline_links.h), in the order the schedule issues them.
//
// A tied input / output embedding (GPT-2, OPT) lives on the first stage, which owns and updates
// it, and is lent to the last stage for its LM head: the first stage sends the weights at the
// start of each step, the last stage returns its gradient (summed over the micro-batches in fp32)
// before the first stage's reducing backward, which adds it to its own, as Megatron sums the two
// copies' gradients. docs/parallelism.md.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/train/pipeline_stage.h"
#include "core/train/schedule.h"
#include "models/causal_lm.h"
#include "models/linear.h"
#include "parallel/pipeline_links.h"

namespace cr {

class Communicator;
class CommWork;
class ParameterStrategy;

// Whether `tensor` is one of the parameters `layout` runs (its chunks' blocks, the embedding or
// the head), lent ones excluded: what the ParameterStrategy of this rank owns.
std::function<bool(const torch::Tensor&)> owned_by_stage(CausalLMImpl& model, const StageLayout& layout);

class StageExecutor {
 public:
  // `strategy` owns the parameters owned_by_stage(); `links`: the pipeline's message links;
  // `pipeline_host`: the pipeline group on the host (null without a pipeline). `micro_batches`:
  // per step's; `rows`, `seq_len`: a micro-batch's. `checkpointing`: train.activation_checkpointing.
  StageExecutor(CausalLMImpl& model, ParameterStrategy& strategy, StageLayout layout, const PipelineLinks& links,
                Communicator* pipeline_host, torch::Device device, torch::ScalarType compute_dtype,
                int64_t micro_batches, int64_t rows, int64_t seq_len, const std::string& checkpointing);
  ~StageExecutor();
  StageExecutor(const StageExecutor&) = delete;
  StageExecutor& operator=(const StageExecutor&) = delete;

  const StageLayout& layout() const { return layout_; }
  bool holds_loss() const { return layout_.chunks.back().heads; }  // the last stage

  // Before the step's first instruction: drops the last step's state, lends the tied embedding.
  void begin_step();
  // The step's micro-batch `micro_batch` (LoadMicroBatch), on the device.
  void set_batch(int64_t micro_batch, torch::Tensor inputs, torch::Tensor targets);
  // `seed` fixes the micro-batch's dropout masks, drawn block by block so that any split of the
  // blocks into stages draws the same ones.
  void forward(const Instruction& instruction, uint64_t seed);
  // Backward, or under zero_bubble its input part (BackwardInput), whose weight gradients
  // backward_weights() computes later. `reduces`: the step's last backward on this rank. The loss
  // is multiplied by `loss_multiplier` (loss scale / micro-batches) before its backward.
  void backward(const Instruction& instruction, bool reduces, double loss_multiplier);
  void backward_weights(const Instruction& instruction, bool reduces);
  void send_activation(const Instruction& instruction);
  void recv_activation(const Instruction& instruction);
  void send_gradient(const Instruction& instruction);
  void recv_gradient(const Instruction& instruction);
  // Waits for the sends still in flight: before the optimizer changes the weights they read.
  void wait_for_sends();

  // The mean of the step's micro-batch losses, on every stage (from the last one).
  double mean_loss();
  // Before evaluating: lends the tied embedding's current weights.
  void begin_evaluation();
  // Evaluation: one micro-batch forward through every stage, no gradients; the loss on the
  // last stage, undefined on the others.
  torch::Tensor forward_only(const torch::Tensor& inputs, const torch::Tensor& targets);
  // `value` from the last stage, on every stage.
  double from_last_stage(double value);

  // The step's measured bubble, on every stage: idle over compute time summed over the stages,
  // each stage's span running from the step's start to the last stage's last backward, as
  // schedule_timeline.h's bubble_ratio() predicts it. Collective over the pipeline group.
  double measured_bubble();
  // `values` of every stage, in stage order. Collective over the pipeline group.
  std::vector<double> from_every_stage(std::vector<double> values);

 private:
  // One (micro-batch, chunk)'s tensors during a step.
  struct Slot {
    torch::Tensor input;            // the activation received (a leaf: its gradient is sent back)
    torch::Tensor output;           // the chunk's output, or the loss on the chunk that heads
    torch::Tensor output_gradient;  // received from the next stage
    torch::Tensor input_gradient;   // to send to the previous stage
  };
  size_t slot_index(const Instruction& instruction) const;
  Slot& slot(const Instruction& instruction);
  const StageChunk& chunk(const Instruction& instruction) const;
  void lend_embedding();
  // Compute of `extra_s` artificial seconds plus `work`, counted as busy.
  template <typename Work>
  void compute(double extra_s, bool backward, Work work);
  void take_tied_gradient();
  torch::Tensor run_chunk(const StageChunk& chunk, torch::Tensor x, std::optional<uint64_t> seed);
  torch::Tensor empty_activation() const;
  // To or from the neighbouring stage `peer`, in `direction` (of the message).
  void send(torch::Tensor tensor, PipelineDirection direction, int peer, int tag);
  void recv(torch::Tensor tensor, PipelineDirection direction, int peer, int tag);
  void return_tied_gradient();

  CausalLMImpl& model_;
  ParameterStrategy& strategy_;
  StageLayout layout_;
  const PipelineLinks& links_;
  Communicator* pipeline_host_;
  torch::Device device_;
  torch::ScalarType activation_dtype_;
  bool dropout_;
  bool recompute_blocks_, recompute_attention_;  // activation checkpointing full, selective
  int64_t micro_batches_;
  std::vector<int64_t> activation_shape_;
  std::vector<Slot> slots_;  // by micro-batch x chunks + chunk
  std::vector<DeferredWeightGradients> deferred_;  // zero_bubble, as slots_
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches_;  // (inputs, targets) by micro-batch
  std::vector<torch::Tensor> losses_;                             // by micro-batch, the last stage's
  std::vector<std::unique_ptr<CommWork>> sends_;
  // Tied embeddings across stages: the first stage's parameter name, and on the last stage the
  // lent weights' gradient summed over the step's micro-batches.
  bool lends_embedding_ = false, borrows_embedding_ = false;
  std::string tied_name_;
  torch::Tensor tied_weight_;    // the model's output embedding weight
  torch::Tensor tied_gradient_;  // fp32, the last stage's
  int64_t head_backwards_ = 0;
  // This step's compute time, and when its last backward ended, since begin_step().
  std::chrono::steady_clock::time_point step_start_;
  double busy_s_ = 0, flushed_s_ = 0;
  // artificial_stage_cost()'s, in seconds.
  double extra_forward_s_ = 0, extra_backward_s_ = 0;
};

}  // namespace cr
