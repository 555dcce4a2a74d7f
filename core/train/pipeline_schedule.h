// Pipeline schedules as data: for one stage of a P-stage pipeline, the instructions of a step
// over M micro-batches. GPipe runs every forward, then every backward. 1F1B (PipeDream-Flush)
// runs P - stage - 1 forwards, then alternates one forward and one backward, holding at most
// P - stage micro-batches' activations. Interleaved 1F1B (Megatron's virtual pipeline) gives each
// stage V model chunks, shrinking the bubble V-fold for more messages. Zero-bubble (ZB-H1)
// splits backward into the input's gradient (sent on at once) and the weights' gradients,
// deferred into what would be idle time, at 1F1B's activation memory.
//
// Each forward of a stage that is not the first receives its activation, each backward of a
// stage that is not the last receives its gradient; the first and the last stage load the
// micro-batch (inputs, targets). Sends are non-blocking and receives block, so any stage's list
// runs without deadlock (schedule_timeline.h checks this for every schedule).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/train/schedule.h"

namespace cr {

enum class PipelineScheduleKind { GPipe, OneFOneB, Interleaved, ZeroBubble };

// "gpipe", "1f1b", "interleaved", "zero_bubble"; cr::Error naming the choices otherwise.
PipelineScheduleKind parse_pipeline_schedule(const std::string& name);
const char* pipeline_schedule_name(PipelineScheduleKind kind);

struct PipelineLayout {
  int64_t stages = 1;         // P
  int64_t stage = 0;          // this rank's, in [0, P)
  int64_t micro_batches = 1;  // M per step
  int64_t chunks = 1;         // V model chunks per stage: interleaved only
};

// Forwards a stage runs before its first backward, as Megatron counts them (the warm-up):
// GPipe M; 1F1B min(P - stage - 1, M); interleaved 2 (P - stage - 1) + (V - 1) P, or every
// forward when M == P; zero-bubble as 1F1B.
int64_t warmup_forwards(PipelineScheduleKind kind, const PipelineLayout& layout);

// The stage's instructions for one step, ending with reduce and step. cr::Error for a layout
// the schedule cannot run (interleaved needs V >= 2 and M a multiple of P).
std::vector<Instruction> pipeline_schedule(PipelineScheduleKind kind, const PipelineLayout& layout);

}  // namespace cr
