// Schedules as data: the instruction lists a rank executes for one step.
#include <catch2/catch.hpp>

#include "core/base/error.h"
#include "core/train/schedule.h"

using namespace cr;

TEST_CASE("no pipeline: each micro-batch is loaded, run forward and backward, then reduce and step", "[schedule]") {
  CHECK(describe(no_pipeline_schedule(1)) == "load 0, forward 0, backward 0, reduce, step");
  const auto program = no_pipeline_schedule(3);
  CHECK(describe(program) ==
        "load 0, forward 0, backward 0, load 1, forward 1, backward 1, load 2, forward 2, backward 2, reduce, step");
  // Every micro-batch appears exactly once in each role, in order.
  for (const Op op : {Op::LoadMicroBatch, Op::Forward, Op::Backward}) {
    int64_t next = 0;
    for (const auto& instruction : program) {
      if (instruction.op == op) CHECK(instruction.micro_batch == next++);
    }
    CHECK(next == 3);
  }
  // The step's reduction waits for the last backward.
  CHECK(reducing_backward(program) == 8);
  CHECK(program[reducing_backward(program)] == Instruction{Op::Backward, 2});
}

TEST_CASE("schedules refuse impossible inputs with a message", "[schedule]") {
  CHECK_THROWS_WITH(no_pipeline_schedule(0), Catch::Contains("at least one micro-batch"));
  const std::vector<Instruction> no_backward = {{Op::LoadMicroBatch, 0}, {Op::Forward, 0}, {Op::ReduceGradients}};
  CHECK_THROWS_WITH(reducing_backward(no_backward),
                    Catch::Contains("no backward before its gradient reduction") &&
                        Catch::Contains("load 0, forward 0, reduce"));
}
