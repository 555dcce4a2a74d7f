// A training step as data: the list of instructions one rank executes, produced by a schedule
// generator and run by the trainer's executor. Generators are plain functions of the layout, so
// every schedule is tested as a list without a model (tests/test_schedule.cpp).
//
// Without pipeline parallelism a step is gradient accumulation over the rank's micro-batches:
//   load 0, forward 0, backward 0, load 1, forward 1, backward 1, ..., reduce, optimizer step
// Pipeline schedules (GPipe, 1F1B, interleaved, zero-bubble: pipeline_schedule.h) add the send /
// receive instructions and order forward and backward across stages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cr {

enum class Op {
  LoadMicroBatch,   // read micro-batch m's tokens (and targets) onto the device
  Forward,          // forward of micro-batch m through this rank's model part; keeps its loss
  Backward,         // backward of micro-batch m
  BackwardInput,    // zero-bubble: the part of backward that gives the input's gradient (sent on)
  BackwardWeight,   // zero-bubble: the rest, the weights' gradients, deferred into bubbles
  SendActivation,   // to the next stage
  RecvActivation,   // from the previous stage
  SendGradient,     // to the previous stage
  RecvGradient,     // from the next stage
  ReduceGradients,  // finish the step's gradient reduction over the replicas
  OptimizerStep,
};

const char* op_name(Op op);  // "load", "forward", ...

struct Instruction {
  Op op;
  int64_t micro_batch = -1;  // -1 for step-level instructions
  int64_t chunk = 0;         // interleaved pipelines: which of the rank's model chunks
  bool operator==(const Instruction& other) const {
    return op == other.op && micro_batch == other.micro_batch && chunk == other.chunk;
  }
};

// "load 0, forward 0, backward 0, reduce, step": for messages and tests; a chunk other than 0
// is written after the micro-batch, "forward 3.1".
std::string describe(const std::vector<Instruction>& program);

// The step without a pipeline: `micro_batches` (>= 1) accumulated, then reduce and step.
std::vector<Instruction> no_pipeline_schedule(int64_t micro_batches);

// Index of the backward after which the step's gradients are complete (the last Backward or
// BackwardWeight before ReduceGradients): its reduction is the one reduce_gradients() waits for.
// cr::Error when the program has no such backward.
size_t reducing_backward(const std::vector<Instruction>& program);

}  // namespace cr
