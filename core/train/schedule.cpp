#include "core/train/schedule.h"

#include <fmt/format.h>

#include "core/base/error.h"

namespace cr {

const char* op_name(Op op) {
  switch (op) {
    case Op::LoadMicroBatch: return "load";
    case Op::Forward: return "forward";
    case Op::Backward: return "backward";
    case Op::BackwardInput: return "backward-input";
    case Op::BackwardWeight: return "backward-weight";
    case Op::SendActivation: return "send-activation";
    case Op::RecvActivation: return "recv-activation";
    case Op::SendGradient: return "send-gradient";
    case Op::RecvGradient: return "recv-gradient";
    case Op::ReduceGradients: return "reduce";
    case Op::OptimizerStep: return "step";
  }
  return "?";
}

std::string describe(const std::vector<Instruction>& program) {
  std::string text;
  for (const auto& instruction : program) {
    if (!text.empty()) text += ", ";
    text += op_name(instruction.op);
    if (instruction.micro_batch >= 0) text += fmt::format(" {}", instruction.micro_batch);
    if (instruction.chunk != 0) text += fmt::format(".{}", instruction.chunk);
  }
  return text;
}

std::vector<Instruction> no_pipeline_schedule(int64_t micro_batches) {
  if (micro_batches < 1) fail("a step needs at least one micro-batch, got {}", micro_batches);
  std::vector<Instruction> program;
  for (int64_t m = 0; m < micro_batches; ++m) {
    program.push_back({Op::LoadMicroBatch, m});
    program.push_back({Op::Forward, m});
    program.push_back({Op::Backward, m});
  }
  program.push_back({Op::ReduceGradients});
  program.push_back({Op::OptimizerStep});
  return program;
}

size_t reducing_backward(const std::vector<Instruction>& program) {
  size_t last = program.size();
  for (size_t i = 0; i < program.size(); ++i) {
    if (program[i].op == Op::Backward || program[i].op == Op::BackwardWeight) last = i;
    if (program[i].op == Op::ReduceGradients) {
      if (last == program.size()) break;
      return last;
    }
  }
  fail("schedule [{}] has no backward before its gradient reduction", describe(program));
}

}  // namespace cr
