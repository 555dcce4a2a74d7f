#include "core/train/schedule_timeline.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"
#include "parallel/pipeline_ring.h"

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

void check_device_messages(const std::vector<std::vector<Instruction>>& programs, bool per_link) {
  const auto P = static_cast<int64_t>(programs.size());
  const int stages = static_cast<int>(P);
  struct Posted {
    MessageKey key;
    bool sends;  // else this end receives it
    int peer;
  };
  // Per stage, what waits on each communicator, in issue order.
  const size_t channels = per_link ? 2 * static_cast<size_t>(pipeline_link_colours(stages)) : 1;
  std::vector<std::vector<std::deque<Posted>>> queues(programs.size(), std::vector<std::deque<Posted>>(channels));
  std::vector<size_t> next(programs.size(), 0);
  std::set<std::pair<int64_t, MessageKey>> delivered;  // (receiving stage, message)
  const auto channel_of = [&](bool activation, int sender) -> size_t {
    if (!per_link) return 0;
    const auto direction = activation ? PipelineDirection::Next : PipelineDirection::Previous;
    return static_cast<size_t>((activation ? 0 : pipeline_link_colours(stages)) +
                               pipeline_link_colour(sender, direction, stages));
  };
  for (bool moved = true; moved;) {
    moved = false;
    for (int64_t s = 0; s < P; ++s) {
      const auto& program = programs[static_cast<size_t>(s)];
      for (auto& at = next[static_cast<size_t>(s)]; at < program.size(); ++at) {
        const Instruction& in = program[at];
        const bool receive = in.op == Op::RecvActivation || in.op == Op::RecvGradient;
        if (!receive && in.op != Op::SendActivation && in.op != Op::SendGradient) continue;
        const bool activation = in.op == Op::RecvActivation || in.op == Op::SendActivation;
        const int64_t here = in.chunk * P + s;
        const MessageKey key{activation, in.micro_batch, !receive ? here : activation ? here - 1 : here + 1};
        if (receive && delivered.count({s, key})) continue;  // posted earlier, arrived since
        const int sender = static_cast<int>(std::get<2>(key) % P);
        const auto direction = activation ? PipelineDirection::Next : PipelineDirection::Previous;
        auto& queue = queues[static_cast<size_t>(s)][channel_of(activation, sender)];
        const bool posted = std::any_of(queue.begin(), queue.end(), [&](const Posted& p) { return p.key == key; });
        if (!posted) queue.push_back({key, !receive, receive ? sender : pipeline_neighbour(sender, direction, stages)});
        moved = moved || !posted;
        if (receive) break;  // the stage waits for it
      }
    }
    // A send and its receive complete together when both lead their communicator's queues.
    for (int64_t s = 0; s < P; ++s) {
      for (size_t c = 0; c < channels; ++c) {
        auto& queue = queues[static_cast<size_t>(s)][c];
        if (queue.empty() || !queue.front().sends) continue;
        auto& peer = queues[static_cast<size_t>(queue.front().peer)][c];
        if (peer.empty() || peer.front().sends || peer.front().key != queue.front().key) continue;
        delivered.insert({queue.front().peer, queue.front().key});
        queue.pop_front();
        peer.pop_front();
        moved = true;
      }
    }
  }
  std::vector<std::string> blocked;
  for (int64_t s = 0; s < P; ++s) {
    for (const auto& queue : queues[static_cast<size_t>(s)]) {
      if (queue.empty()) continue;
      const auto& [activation, micro_batch, from] = queue.front().key;
      blocked.push_back(fmt::format("stage {} {} {} {} of virtual stage {}", s,
                                    queue.front().sends ? "sending" : "receiving",
                                    activation ? "activation" : "gradient", micro_batch, from));
    }
  }
  if (!blocked.empty()) fail("the stages wait on each other for ever: {}", fmt::join(blocked, "; "));
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
