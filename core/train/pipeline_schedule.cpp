#include "core/train/pipeline_schedule.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/base/error.h"

namespace cr {
namespace {

// One unit of compute of a stage: a forward, a backward (or its input part), a weight part.
struct Unit {
  Op op;
  int64_t micro_batch;
  int64_t chunk;
};

// The stage's computation in the order it runs; the communication around each unit follows
// from where its chunk sits in the pipeline.
class ProgramBuilder {
 public:
  explicit ProgramBuilder(const PipelineLayout& layout) : layout_(layout) {}

  void add(const Unit& unit) {
    const int64_t virtual_stages = layout_.stages * layout_.chunks;
    const int64_t position = unit.chunk * layout_.stages + layout_.stage;  // among the virtual stages
    const bool first = position == 0, last = position == virtual_stages - 1;
    const int64_t m = unit.micro_batch, c = unit.chunk;
    switch (unit.op) {
      case Op::Forward:
        if (first || last) program_.push_back({Op::LoadMicroBatch, m, c});
        if (!first) program_.push_back({Op::RecvActivation, m, c});
        program_.push_back({Op::Forward, m, c});
        if (!last) program_.push_back({Op::SendActivation, m, c});
        break;
      case Op::Backward:
      case Op::BackwardInput:
        if (!last) program_.push_back({Op::RecvGradient, m, c});
        program_.push_back({unit.op, m, c});
        if (!first) program_.push_back({Op::SendGradient, m, c});
        break;
      default:
        program_.push_back({unit.op, m, c});
    }
  }

  std::vector<Instruction> finish() {
    program_.push_back({Op::ReduceGradients});
    program_.push_back({Op::OptimizerStep});
    return std::move(program_);
  }

 private:
  const PipelineLayout& layout_;
  std::vector<Instruction> program_;
};

void check_layout(PipelineScheduleKind kind, const PipelineLayout& layout) {
  if (layout.stages < 1 || layout.stage < 0 || layout.stage >= layout.stages) {
    fail("pipeline stage {} of {}: out of range", layout.stage, layout.stages);
  }
  if (layout.micro_batches < 1) fail("a pipeline step needs at least one micro-batch, got {}", layout.micro_batches);
  if (kind != PipelineScheduleKind::Interleaved) {
    if (layout.chunks != 1) fail("{} runs one model chunk per stage, got {}", pipeline_schedule_name(kind), layout.chunks);
    return;
  }
  if (layout.chunks < 2) fail("the interleaved schedule needs at least 2 model chunks per stage, got {}", layout.chunks);
  if (layout.micro_batches % layout.stages != 0) {
    fail("the interleaved schedule needs micro-batches ({}) to be a multiple of the pipeline stages ({})",
         layout.micro_batches, layout.stages);
  }
}

// Megatron's order of an interleaved stage's forward units: P micro-batches through chunk 0,
// the same P through chunk 1, ..., then the next P micro-batches. Backward units go through the
// chunks in reverse.
Unit interleaved_unit(const PipelineLayout& layout, int64_t k, bool forward) {
  const int64_t P = layout.stages, V = layout.chunks;
  const int64_t group = k / (P * V), in_group = k % (P * V);
  const int64_t chunk = in_group / P;
  return {forward ? Op::Forward : Op::Backward, group * P + in_group % P, forward ? chunk : V - 1 - chunk};
}

// Zero-bubble H1 on unit costs: each stage takes, whenever it is free, a ready backward-input
// first, else a forward while fewer than P - stage micro-batches wait for their backward-input
// (1F1B's bound on activations, hence its warm-up) and fewer than P weight gradients wait (their
// layer inputs are what deferring costs), else the oldest pending weight gradient. With a
// backward split into equal halves this gives a third of 1F1B's bubble, as ZB-H1 does. Simulated for every stage at once, since a stage's
// choices depend on when its neighbours' messages arrive.
std::vector<std::vector<Unit>> zero_bubble_orders(int64_t P, int64_t M) {
  constexpr int64_t kNever = -1;
  std::vector<std::vector<Unit>> orders(P);
  // When stage s finished the forward / backward-input of micro-batch m (kNever: not yet).
  std::vector<std::vector<int64_t>> forward_done(P, std::vector<int64_t>(M, kNever));
  std::vector<std::vector<int64_t>> input_done(P, std::vector<int64_t>(M, kNever));
  std::vector<int64_t> next_forward(P, 0), next_input(P, 0), next_weight(P, 0), busy_until(P, 0);
  const auto done = [&] {
    for (int64_t s = 0; s < P; ++s) {
      if (next_weight[s] < M) return false;
    }
    return true;
  };
  for (int64_t t = 0; !done(); ++t) {
    for (int64_t s = 0; s < P; ++s) {
      if (busy_until[s] > t) continue;
      const int64_t b = next_input[s], f = next_forward[s];
      const bool input_ready = b < M && forward_done[s][b] != kNever && forward_done[s][b] <= t &&
                               (s == P - 1 || (input_done[s + 1][b] != kNever && input_done[s + 1][b] <= t));
      const bool forward_ready = f < M && f - next_input[s] < P - s && next_input[s] - next_weight[s] < P &&
                                 (s == 0 || (forward_done[s - 1][f] != kNever && forward_done[s - 1][f] <= t));
      if (input_ready) {
        orders[s].push_back({Op::BackwardInput, b, 0});
        input_done[s][b] = t + 1;
        ++next_input[s];
      } else if (forward_ready) {
        orders[s].push_back({Op::Forward, f, 0});
        forward_done[s][f] = t + 1;
        ++next_forward[s];
      } else if (next_weight[s] < next_input[s]) {
        orders[s].push_back({Op::BackwardWeight, next_weight[s], 0});
        ++next_weight[s];
      } else {
        continue;
      }
      busy_until[s] = t + 1;
    }
  }
  return orders;
}

}  // namespace

PipelineScheduleKind parse_pipeline_schedule(const std::string& name) {
  if (name == "gpipe") return PipelineScheduleKind::GPipe;
  if (name == "1f1b") return PipelineScheduleKind::OneFOneB;
  if (name == "interleaved") return PipelineScheduleKind::Interleaved;
  if (name == "zero_bubble") return PipelineScheduleKind::ZeroBubble;
  fail("unknown pipeline schedule '{}' (gpipe, 1f1b, interleaved or zero_bubble)", name);
}

const char* pipeline_schedule_name(PipelineScheduleKind kind) {
  switch (kind) {
    case PipelineScheduleKind::GPipe: return "gpipe";
    case PipelineScheduleKind::OneFOneB: return "1f1b";
    case PipelineScheduleKind::Interleaved: return "interleaved";
    case PipelineScheduleKind::ZeroBubble: return "zero_bubble";
  }
  return "?";
}

int64_t warmup_forwards(PipelineScheduleKind kind, const PipelineLayout& layout) {
  check_layout(kind, layout);
  const int64_t P = layout.stages, s = layout.stage, M = layout.micro_batches, V = layout.chunks;
  switch (kind) {
    case PipelineScheduleKind::GPipe: return M;
    case PipelineScheduleKind::Interleaved:
      return M == P ? M * V : std::min(2 * (P - s - 1) + (V - 1) * P, M * V);
    default: return std::min(P - s - 1, M);
  }
}

std::vector<Instruction> pipeline_schedule(PipelineScheduleKind kind, const PipelineLayout& layout) {
  const int64_t warmup = warmup_forwards(kind, layout);
  ProgramBuilder builder(layout);
  const int64_t M = layout.micro_batches;
  switch (kind) {
    case PipelineScheduleKind::GPipe:
      for (int64_t m = 0; m < M; ++m) builder.add({Op::Forward, m, 0});
      for (int64_t m = 0; m < M; ++m) builder.add({Op::Backward, m, 0});
      break;
    case PipelineScheduleKind::OneFOneB:
    case PipelineScheduleKind::Interleaved: {
      const int64_t units = M * layout.chunks;
      const auto unit = [&](int64_t k, bool forward) {
        if (kind == PipelineScheduleKind::Interleaved) return interleaved_unit(layout, k, forward);
        return Unit{forward ? Op::Forward : Op::Backward, k, 0};
      };
      for (int64_t k = 0; k < warmup; ++k) builder.add(unit(k, true));
      for (int64_t k = 0; k + warmup < units; ++k) {
        builder.add(unit(warmup + k, true));
        builder.add(unit(k, false));
      }
      for (int64_t k = std::max<int64_t>(units - warmup, 0); k < units; ++k) builder.add(unit(k, false));
      break;
    }
    case PipelineScheduleKind::ZeroBubble: {
      const auto orders = zero_bubble_orders(layout.stages, M);
      for (const Unit& unit : orders[static_cast<size_t>(layout.stage)]) builder.add(unit);
      break;
    }
  }
  return builder.finish();
}

}  // namespace cr
