// Start-up agreement: every rank of a job must train the same config from the same checkpoint.
// A rank that sees another checkpoint (a node-local directory, a racing writer) or another config
// would silently diverge, so the job stops instead, naming the ranks that disagree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "parallel/communicator.h"

namespace cr {

struct StartupChoice {
  std::string config_text;                // the resolved config, as dumped (without runtime.*)
  std::optional<std::string> checkpoint;  // the checkpoint this rank resumes from
  int64_t resume_step = 0;
};

// Collective over `control` (null: nothing to agree on); compares CRC-32s of the texts. Throws cr::Error on every rank when any
// rank differs from rank 0, naming each such rank and what differs.
void check_ranks_agree(Communicator* control, const StartupChoice& choice);

}  // namespace cr
