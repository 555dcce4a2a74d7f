// Runs every stage's instruction list of a pipeline step on a model clock: compute takes a fixed
// time per kind, messages arrive when sent, a receive waits for its send. What comes out is what
// a schedule costs (the bubble: each stage's idle time), what it holds (the most micro-batches
// whose activations a stage keeps at once) and that it cannot deadlock (every receive has its
// send, ahead of it in the sender's list). Tests compare schedules with their formulas; `plan`
// uses the peaks for activation memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/train/schedule.h"

namespace cr {

struct ComputeCosts {
  double forward = 1.0;
  double backward = 2.0;         // a whole backward
  double backward_input = 1.0;   // zero-bubble's parts
  double backward_weight = 1.0;
};

// One piece of compute on a stage's clock.
struct TimelineEvent {
  double start = 0.0, end = 0.0;
  Instruction instruction;
};

struct StageTimeline {
  std::vector<TimelineEvent> events;  // compute only, in order
  double busy = 0.0;                // compute time
  double finish = 0.0;              // when its last instruction ends
  int64_t peak_in_flight = 0;       // micro-batch chunks holding activations at once (forward to backward)
  int64_t peak_pending_weights = 0; // zero-bubble: backward-inputs done whose weight gradients wait
};

struct PipelineTimeline {
  std::vector<StageTimeline> stages;
  double makespan = 0.0;  // when the last stage finishes
  // Idle time over compute time, summed over stages: (P - 1) / M for GPipe and 1F1B.
  double bubble_ratio() const;
};

// One row per stage, one two-character cell per time unit: "F3" forward of micro-batch 3, "B3"
// backward (two cells at the default costs), "b3" and "w3" zero-bubble's backward-input and
// weight parts, ".." idle; a second model chunk (interleaved) in lower case for F and B
// ("f3", "x3" for its backward). For docs; needs integer event times and micro-batches < 10.
std::string render_timeline(const PipelineTimeline& timeline);

// `programs[s]` is stage s's list (pipeline_schedule); `chunks` the model chunks per stage.
// cr::Error naming the stage and instruction when a receive has no matching send, a send no
// receive, or the stages wait on each other for ever.
PipelineTimeline simulate_pipeline(const std::vector<std::vector<Instruction>>& programs, int64_t chunks,
                                   const ComputeCosts& costs = {});

// Runs the stages' messages as NCCL does (parallel/pipeline_links.h): each communicator carries
// a stage's sends and receives in the order the stage issues them, a send completes only when its
// receive runs, and a stage waits at each receive. `per_link`: each message on its direction's
// and edge's communicator (PipelineLinks); else all on one. cr::Error naming each stage's blocked
// message when the stages wait on each other for ever.
void check_device_messages(const std::vector<std::vector<Instruction>>& programs, bool per_link);

}  // namespace cr
