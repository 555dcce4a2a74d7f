#include "cmd/job.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/base/log.h"
#include "core/train/runtime.h"
#include "core/base/error.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/parallel_context.h"

namespace cr {

JobMembership::JobMembership(const LaunchEnvironment& launch, const Config& config) {
  if (!launch.under_mpi) return;
  world_ = mpi_world(config.runtime.collective_timeout_s);
  check_mpi_matches_launch(launch, world_->rank(), world_->size());
  set_log_rank(world_->rank(), world_->size());
  set_ranks_on_this_node(ranks_sharing_cores(launch, available_cores()));
  if (world_->size() > 1 && resolve_device(config.runtime).is_cuda()) {
    if (!nccl_available()) fail("training on CUDA with {} ranks needs the NCCL backend, which this build lacks "
                                "(configure with CR_WITH_NCCL=ON where NCCL is installed)", world_->size());
    // One GPU per rank of a node, by local rank.
    const int device = launch.local_size > 0 ? launch.local_rank : 0;
    set_cuda_device_index(device);
    cuda_device_ = device;
  }
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
