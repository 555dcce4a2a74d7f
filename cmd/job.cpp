#include "cmd/job.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/log.h"
#include "core/runtime.h"
#include "parallel/mpi_communicator.h"

namespace cr {

JobMembership::JobMembership(const LaunchEnvironment& launch, const Config& config) {
  if (!launch.under_mpi) return;
  world_ = mpi_world(config.runtime.collective_timeout_s);
  check_mpi_matches_launch(launch, world_->rank(), world_->size());
  set_log_rank(world_->rank(), world_->size());
  set_ranks_on_this_node(ranks_sharing_cores(launch, available_cores()));
}

JobMembership::~JobMembership() {
  if (!world_) return;
  world_.reset();
  mpi_finalize();
}

void announce_launch_rank(const LaunchEnvironment& launch) {
  set_log_rank(launch.rank, std::max(1, launch.world_size));
}

void adapt_progress_bar(Config& config, const LaunchEnvironment& launch) {
  if (!launch.under_mpi) return;
  const char* terminal = std::getenv(kStdoutIsTerminalVariable);
  if (!terminal || std::strcmp(terminal, "1") != 0) config.runtime.progress_bar = false;
}

}  // namespace cr
