#include "memory/gemini/tensor_state.h"

#include "core/base/error.h"

namespace cr {

const char* tensor_state_name(TensorState state) {
  switch (state) {
    case TensorState::Free: return "FREE";
    case TensorState::Hold: return "HOLD";
    case TensorState::Compute: return "COMPUTE";
    case TensorState::HoldAfterBwd: return "HOLD_AFTER_BWD";
    case TensorState::ReadyForReduce: return "READY_FOR_REDUCE";
  }
  return "?";
}

bool legal_transition(TensorState from, TensorState to) {
  using S = TensorState;
  switch (from) {
    case S::Free: return to == S::Hold;
    case S::Hold: return to == S::Free || to == S::Compute;
    case S::Compute: return to == S::Hold || to == S::HoldAfterBwd;
    case S::HoldAfterBwd: return to == S::Compute || to == S::ReadyForReduce;
    case S::ReadyForReduce: return to == S::Hold;
  }
  return false;
}

ChunkTensorStates::ChunkTensorStates(size_t chunk, size_t tensors, TensorState initial)
    : chunk_(chunk), states_(tensors, initial) {
  counts_[static_cast<size_t>(initial)] = tensors;
}

void ChunkTensorStates::move(size_t tensor, TensorState to) {
  CR_CHECK(tensor < states_.size(), "chunk {}: no tensor {}", chunk_, tensor);
  const TensorState from = states_[tensor];
  if (!legal_transition(from, to)) {
    fail("chunk {} tensor {}: {} -> {} is not a legal Gemini state change", chunk_, tensor, tensor_state_name(from),
         tensor_state_name(to));
  }
  --counts_[static_cast<size_t>(from)];
  ++counts_[static_cast<size_t>(to)];
  states_[tensor] = to;
}

void ChunkTensorStates::move_all(TensorState to) {
  for (size_t t = 0; t < states_.size(); ++t) move(t, to);
}

}  // namespace cr
