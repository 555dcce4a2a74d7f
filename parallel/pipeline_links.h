// The communicators a pipeline's point-to-point messages travel on.
//
// NCCL runs a communicator's operations on one stream in the order they are issued, and a send
// completes only when its receive runs. With one communicator per pipeline, 1F1B would wait for
// ever: stage s queues micro-batch m+1's activation for s+1 while s+1 queues m's gradient for s,
// each ahead of the receive that would match the other's send. So each directed edge of the ring
// of stages has a communicator on which its sender only sends and its receiver only receives, and
// a send waits for nothing but its own receive. Messages to the next stage (activations; from the
// last stage to the first: interleaved activations and the tied embedding's gradient) and to the
// previous one (gradients; from the first to the last: the tied weights) each travel on the
// communicator of their direction and their edge's colour (pipeline_ring.h).
// check_device_messages (core/train/schedule_timeline.h) runs every schedule under these rules.
#pragma once

#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/pipeline_ring.h"

namespace cr {

class PipelineLinks {
 public:
  PipelineLinks() = default;  // one stage: no messages
  // Collective over `pipeline_host` (the pipeline axis's host group): a copy of it per direction
  // and colour; device_index >= 0 gives each an NCCL twin on that device, which then carries the
  // messages.
  PipelineLinks(Communicator& pipeline_host, int device_index);
  ~PipelineLinks();
  PipelineLinks(const PipelineLinks&) = delete;
  PipelineLinks& operator=(const PipelineLinks&) = delete;

  // The communicator carrying the messages `sender` sends in `direction`.
  Communicator& from(int sender, PipelineDirection direction) const;

 private:
  int stages_ = 1;
  std::vector<std::unique_ptr<Communicator>> owned_;  // twins after their host copies
  std::vector<Communicator*> links_;                  // by direction, then colour
};

}  // namespace cr
