// Activation checkpointing: a piece of the model runs forward without keeping what its backward
// needs, and runs again inside backward to get it (Chen et al., "Training Deep Nets with Sublinear
// Memory Cost"; Megatron's full and selective recompute). `full` recomputes each transformer
// block from its input; `selective` only attention's core (scores, softmax, dropout, probabilities
// times values), the part whose memory grows with the square of the sequence. The rerun sees the
// random number generator as the first run did, so dropout draws the same masks and gradients
// are those without checkpointing, bit for bit.
#pragma once

#include <functional>
#include <vector>

#include <torch/torch.h>

namespace cr {

using RecomputedPart = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// part(inputs), whose intermediate tensors are dropped and recomputed in backward. `random`: the
// part draws random numbers (dropout), so the generator's state is kept for the rerun.
torch::Tensor recompute_in_backward(RecomputedPart part, const std::vector<torch::Tensor>& inputs, bool random);

// While alive on this thread (and gradients are on), attention recomputes its core in backward.
class SelectiveRecompute {
 public:
  SelectiveRecompute();
  ~SelectiveRecompute();
  SelectiveRecompute(const SelectiveRecompute&) = delete;
  SelectiveRecompute& operator=(const SelectiveRecompute&) = delete;

  static bool active();

 private:
  bool outer_;
};

}  // namespace cr
