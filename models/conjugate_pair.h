// Internal to models/: the autograd plumbing the tensor-parallel layers (1d and grids) share. A
// communication whose backward is its conjugate (Megatron's f and g, all-gather and
// reduce-scatter), with the group carried as an integer (saved_data holds IValues only); the
// group outlives the graph (a ParallelContext or a TensorGrid owns it).
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace cr::detail {

inline int64_t handle(Communicator* group) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(group)); }
inline Communicator* communicator(int64_t value) {
  return reinterpret_cast<Communicator*>(static_cast<intptr_t>(value));
}

inline torch::Tensor all_reduced(const torch::Tensor& x, Communicator* group) {
  auto out = x.contiguous().clone();
  group->all_reduce(out, ReduceOp::Sum);
  return out;
}

inline torch::Tensor identity(const torch::Tensor& x, Communicator*) { return x.view_as(x); }

template <torch::Tensor (*Forward)(const torch::Tensor&, Communicator*),
          torch::Tensor (*Backward)(const torch::Tensor&, Communicator*)>
class ConjugatePair : public torch::autograd::Function<ConjugatePair<Forward, Backward>> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, int64_t group) {
    ctx->saved_data["group"] = group;
    return Forward(x, communicator(group));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {Backward(grads[0], communicator(ctx->saved_data["group"].toInt())), torch::Tensor()};
  }
};

}  // namespace cr::detail
