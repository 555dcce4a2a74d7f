// Gemini's per-tensor states, as Colossal-AI names them, and the moves between them that are
// legal; a chunk's tensors change state through ChunkTensorStates, which refuses any other move.
//
//   FREE              the chunk is not gathered here: the tensor has no storage on this rank
//   HOLD              gathered, not in use
//   COMPUTE           its block is running (forward or backward)
//   HOLD_AFTER_BWD    used in this backward, its gradient not yet produced
//   READY_FOR_REDUCE  its gradient is in the chunk's staging; the chunk is reduced when all are
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cr {

enum class TensorState : uint8_t { Free, Hold, Compute, HoldAfterBwd, ReadyForReduce };

const char* tensor_state_name(TensorState state);  // "FREE", "HOLD", ...
bool legal_transition(TensorState from, TensorState to);

class ChunkTensorStates {
 public:
  ChunkTensorStates(size_t chunk, size_t tensors, TensorState initial);

  TensorState state(size_t tensor) const { return states_[tensor]; }
  // cr::Error naming the chunk, the tensor and both states when the move is not legal.
  void move(size_t tensor, TensorState to);
  void move_all(TensorState to);  // every tensor, each move checked
  size_t count(TensorState state) const { return counts_[static_cast<size_t>(state)]; }
  size_t size() const { return states_.size(); }
  bool all(TensorState state) const { return count(state) == size(); }

 private:
  size_t chunk_;
  std::vector<TensorState> states_;
  size_t counts_[5] = {};
};

}  // namespace cr
