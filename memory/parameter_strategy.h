// ParameterStrategy: the one interface between the trainer and memory/. A strategy owns where
// a rank's parameters, gradients and optimizer state live, how gradients are reduced, the
// optimizer step, what happens around each transformer block in forward and backward (gather,
// release, prefetch, moves between tiers), the bytes it holds, and its part of a checkpoint.
// ZeRO stages 0-3 (zero_strategy.h) are one implementation; others plug in the same way.
//
// A training step, as the schedule executor drives it:
//   begin_step(true)
//   per micro-batch: forward with before_block / after_block around each block;
//                    begin_backward(reduces) ... backward ... end_backward()
//   reduce_gradients()                    // what is still in flight; "communication not hidden"
//   gradient_norm(), optimizer_step(...)  // unless the step is skipped (fp16 overflow)
//   end_step()
// Evaluation runs begin_step(false), forwards, end_step().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/checkpoint/tensor_slices.h"
#include "memory/gradient_traffic.h"
#include "memory/state_bytes.h"

namespace cr {

// A rank's part of a checkpoint: slices of the named global tensors, and the buffers they point
// into (kept alive until written).
struct CheckpointPart {
  std::vector<TensorSlice> slices;
  std::vector<torch::Tensor> storage;
};

class ParameterStrategy {
 public:
  virtual ~ParameterStrategy();

  virtual int64_t numel() const = 0;  // parameters of the model this rank runs

  virtual void begin_step(bool training) = 0;
  virtual void before_block(int64_t block) = 0;
  // Returns the block's output, possibly wrapped so that backward reaches the strategy again.
  virtual torch::Tensor after_block(int64_t block, const torch::Tensor& output) = 0;
  // `reduces`: this backward is the last before reduce_gradients().
  virtual void begin_backward(bool reduces) = 0;
  virtual void end_backward() = 0;
  virtual void reduce_gradients() = 0;
  virtual void end_step() = 0;

  // L2 norm of the reduced gradients over every rank that holds parameters (before any loss
  // scale is divided out); non-finite when any rank's gradients overflowed.
  virtual double gradient_norm() = 0;
  // One optimizer update at `lr`, every gradient multiplied by grad_scale first (clipping and
  // loss-scale division folded together); afterwards every rank computes with the new weights.
  virtual void optimizer_step(double lr, double grad_scale) = 0;
  virtual int64_t optimizer_steps() const = 0;  // Adam's step count, for bias correction

  virtual StateBytes state_bytes() const = 0;
  virtual GradientTraffic gradient_traffic() const = 0;
  virtual TierUsage tier_usage() const { return {}; }

  // This rank's share of the training state: fp32 weights under the parameters' names and Adam's
  // moments as exp_avg.<name> / exp_avg_sq.<name>. Ranks that hold the same state split it, so
  // each element is written once.
  virtual CheckpointPart checkpoint_part() = 0;
  // Reads what this rank holds (weights, and the optimizer state with `optimizer_steps`) from
  // any layout's checkpoint.
  virtual void load_checkpoint(SliceReader& reader, int64_t optimizer_steps) = 0;
  // The whole fp32 weights, on every rank (final CRC, tests).
  virtual torch::Tensor full_weights() = 0;
  // CRC-32 of full_weights()'s bytes; strategies that keep weights in pieces compute it piece by
  // piece, without a second copy of the model. Collective.
  virtual uint32_t weights_crc32();

  // The fp32 gradient of parameter `name` accumulated on this rank during the step, before
  // reduction: a view that may be added to before the step's reducing backward (pipeline stages
  // summing a tied embedding's two uses). cr::Error for an unknown name, or where the strategy
  // keeps no whole local gradient (ZeRO 2-3).
  virtual torch::Tensor local_gradient(const std::string& name) = 0;

  // Test hook for the fp16 loss scaler: makes this rank's reduced gradients non-finite.
  virtual void poison_gradients() = 0;
};

}  // namespace cr
