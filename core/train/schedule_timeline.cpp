#include "core/train/schedule_timeline.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "core/base/error.h"

namespace cr {
namespace {

// A message between two virtual stages: which way, which micro-batch, from which virtual stage.
using MessageKey = std::tuple<bool, int64_t, int64_t>;  // (activation?, micro-batch, sender's virtual stage)

double cost_of(Op op, const ComputeCosts& costs) {
  switch (op) {
    case Op::Forward: return costs.forward;
    case Op::Backward: return costs.backward;
    case Op::BackwardInput: return costs.backward_input;
    case Op::BackwardWeight: return costs.backward_weight;
    default: return 0.0;
  }
}

}  // namespace

double PipelineTimeline::bubble_ratio() const {
  double idle = 0.0, busy = 0.0;
  for (const auto& stage : stages) {
    idle += makespan - stage.busy;
    busy += stage.busy;
  }
  return busy > 0 ? idle / busy : 0.0;
}

PipelineTimeline simulate_pipeline(const std::vector<std::vector<Instruction>>& programs, int64_t chunks,
                                   const ComputeCosts& costs) {
  const auto P = static_cast<int64_t>(programs.size());
  const int64_t virtual_stages = P * chunks;
  std::map<MessageKey, double> sent;  // arrival time of each message sent so far
  std::set<MessageKey> received;
  std::vector<size_t> next(programs.size(), 0);
  std::vector<double> clock(programs.size(), 0.0);
  // Per stage, the (micro-batch, chunk) units holding activations, and those waiting for their weight gradient.
  std::vector<std::set<std::pair<int64_t, int64_t>>> holding(programs.size()), pending_weights(programs.size());
  PipelineTimeline timeline;
  timeline.stages.resize(programs.size());

  const auto virtual_stage = [&](int64_t stage, int64_t chunk) { return chunk * P + stage; };
  // Runs stage s until it must wait for a message not yet sent; true if it moved.
  const auto advance = [&](int64_t s) {
    const auto& program = programs[static_cast<size_t>(s)];
    auto& at = next[static_cast<size_t>(s)];
    auto& now = clock[static_cast<size_t>(s)];
    auto& stage = timeline.stages[static_cast<size_t>(s)];
    auto& held = holding[static_cast<size_t>(s)];
    auto& waiting = pending_weights[static_cast<size_t>(s)];
    bool moved = false;
    for (; at < program.size(); ++at) {
      const Instruction& in = program[at];
      const int64_t here = virtual_stage(s, in.chunk);
      if (in.op == Op::RecvActivation || in.op == Op::RecvGradient) {
        const bool activation = in.op == Op::RecvActivation;
        const int64_t from = activation ? here - 1 : here + 1;
        if (from < 0 || from >= virtual_stages) {
          fail("stage {}: {} {}.{} has no stage to come from", s, op_name(in.op), in.micro_batch, in.chunk);
        }
        const MessageKey key{activation, in.micro_batch, from};
        const auto found = sent.find(key);
        if (found == sent.end()) return moved;
        if (!received.insert(key).second) {
          fail("stage {}: {} {}.{} received twice", s, op_name(in.op), in.micro_batch, in.chunk);
        }
        now = std::max(now, found->second);
      } else if (in.op == Op::SendActivation || in.op == Op::SendGradient) {
        const bool activation = in.op == Op::SendActivation;
        if (!sent.emplace(MessageKey{activation, in.micro_batch, here}, now).second) {
          fail("stage {}: {} {}.{} sent twice", s, op_name(in.op), in.micro_batch, in.chunk);
        }
      } else {
        const double cost = cost_of(in.op, costs);
        if (cost > 0) stage.events.push_back({now, now + cost, in});
        now += cost;
        stage.busy += cost;
        // Activations are held from the forward until the backward that gives the input's gradient; a
        // deferred weight gradient keeps only what its own products need (the layer inputs).
        const std::pair<int64_t, int64_t> unit{in.micro_batch, in.chunk};
        if (in.op == Op::Forward) held.insert(unit);
        if (in.op == Op::Backward || in.op == Op::BackwardInput) held.erase(unit);
        if (in.op == Op::BackwardInput) waiting.insert(unit);
        if (in.op == Op::BackwardWeight) waiting.erase(unit);
        stage.peak_in_flight = std::max(stage.peak_in_flight, static_cast<int64_t>(held.size()));
        stage.peak_pending_weights = std::max(stage.peak_pending_weights, static_cast<int64_t>(waiting.size()));
      }
      moved = true;
    }
    return moved;
  };

  for (bool moved = true; moved;) {
    moved = false;
    for (int64_t s = 0; s < P; ++s) moved = advance(s) || moved;
  }
  for (int64_t s = 0; s < P; ++s) {
    const auto& program = programs[static_cast<size_t>(s)];
    if (next[static_cast<size_t>(s)] < program.size()) {
      const Instruction& in = program[next[static_cast<size_t>(s)]];
      fail("stage {} waits for ever at {} {}.{}: no stage sends it (or they wait on each other)", s, op_name(in.op),
           in.micro_batch, in.chunk);
    }
    timeline.stages[static_cast<size_t>(s)].finish = clock[static_cast<size_t>(s)];
    timeline.makespan = std::max(timeline.makespan, clock[static_cast<size_t>(s)]);
  }
  if (received.size() != sent.size()) {
    fail("{} message(s) sent but never received", sent.size() - received.size());
  }
  return timeline;
}

std::string render_timeline(const PipelineTimeline& timeline) {
  const auto cells = static_cast<size_t>(std::lround(timeline.makespan));
  std::string out;
  for (size_t s = 0; s < timeline.stages.size(); ++s) {
    std::string row(2 * cells, '.');
    for (const auto& event : timeline.stages[s].events) {
      const Instruction& in = event.instruction;
      if (in.micro_batch > 9 || in.chunk > 1) fail("render_timeline: micro-batch {} chunk {} has no cell", in.micro_batch, in.chunk);
      char letter = '?';
      switch (in.op) {
        case Op::Forward: letter = in.chunk == 0 ? 'F' : 'f'; break;
        case Op::Backward: letter = in.chunk == 0 ? 'B' : 'x'; break;
        case Op::BackwardInput: letter = 'b'; break;
        case Op::BackwardWeight: letter = 'w'; break;
        default: break;
      }
      for (auto t = std::lround(event.start); t < std::lround(event.end); ++t) {
        row[2 * static_cast<size_t>(t)] = letter;
        row[2 * static_cast<size_t>(t) + 1] = static_cast<char>('0' + in.micro_batch);
      }
    }
    out += fmt::format("stage {} |{}|\n", s, row);
  }
  return out;
}

}  // namespace cr
