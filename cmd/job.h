// Joining the MPI job this process was started in (by mpirun, srun or our own relaunch): the
// world communicator, this rank's identity for messages, and its share of the cores.
#pragma once

#include <memory>

#include "cmd/launch.h"
#include "core/config/config.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "core/train/runtime.h"
#include "core/train/trainer.h"
#include "parallel/communicator.h"
#include "parallel/parallel_context.h"

namespace cr {

class JobMembership {
 public:
  // Not under a launcher: a job of one, without MPI.
  JobMembership(const LaunchEnvironment& launch, const Config& config);
  ~JobMembership();  // collective: every rank leaves together
  JobMembership(const JobMembership&) = delete;
  JobMembership& operator=(const JobMembership&) = delete;

  // fn(context) over this job's ranks, arranged by the config's mesh into a ParallelContext.
  // A failure ends every rank at once, before leaving the job (collective) while the other
  // ranks are elsewhere.
  template <typename Fn>
  auto run(const Config& config, Fn fn) {
    try {
      const int world_size = world_ ? world_->size() : 1;
      const ProcessMesh mesh = mesh_for(config.parallel, model_spec_from_config(config.model), world_size);
      const ParallelContext context(mesh, world_.get(), cuda_device_);
      return fn(context);
    } catch (const std::exception& e) {
      fail_job_if_distributed(e);
      throw;
    }
  }

  TrainSummary train(const Config& config) {
    return run(config, [&](const ParallelContext& context) { return run_training(config, context); });
  }

 private:
  std::unique_ptr<Communicator> world_;
  int cuda_device_ = -1;  // this rank's GPU when training on CUDA with several ranks (NCCL)
};

// The rank the launcher announced, for messages printed before MPI starts (config errors).
void announce_launch_rank(const LaunchEnvironment& launch);

// Under a launcher, ranks' stdout is a pipe or pseudo-terminal of mpirun's: draw the progress
// bar only when the process that started mpirun had a terminal (the relaunch records that).
void adapt_progress_bar(Config& config, const LaunchEnvironment& launch);

// Recorded by the relaunch for adapt_progress_bar.
constexpr const char* kStdoutIsTerminalVariable = "COLOSSAL_RUN_STDOUT_IS_TTY";

}  // namespace cr
