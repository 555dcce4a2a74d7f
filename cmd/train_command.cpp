#include <algorithm>

#include <fmt/format.h>

#include "cmd/commands.h"
#include "cmd/config_source.h"
#include "core/error.h"
#include "core/log.h"
#include "core/plan.h"
#include "core/runtime.h"
#include "core/trainer.h"
#include "parallel/mpi_communicator.h"

namespace cr {

int run_train_command(const ConfigOptions& options, const LaunchEnvironment& launch) {
  // The launcher's rank first, so that even config messages are printed once.
  set_log_rank(launch.rank, std::max(1, launch.world_size));
  const Config config = load_command_config(options);
  std::unique_ptr<Communicator> world;
  if (launch.under_mpi) {
    world = mpi_world(config.runtime.collective_timeout_s);
    check_mpi_matches_launch(launch, world->rank(), world->size());
    set_log_rank(world->rank(), world->size());
    set_ranks_on_this_node(ranks_sharing_cores(launch, available_cores()));
  }
  TrainSummary summary;
  try {
    summary = run_training(config, world.get());
  } catch (const std::exception& e) {
    // Before `world` is destroyed: that is collective, and the other ranks are elsewhere.
    fail_job_if_distributed(e);
    throw;
  }
  world.reset();
  if (launch.under_mpi) mpi_finalize();
  if (summary.interrupted) return 130;
  if (!summary.losses.empty()) {
    std::string line = fmt::format("done: {} steps, final loss {:.4f}", summary.losses.size(), summary.losses.back());
    if (!summary.val_losses.empty()) line += fmt::format(", val_loss {:.4f}", summary.val_losses.back().second);
    if (summary.last_checkpoint) line += ", checkpoint " + *summary.last_checkpoint;
    print0_line(line);
  } else {
    print0("nothing to do: the checkpoint is already at step {} of {}", summary.first_step, config.train.steps);
  }
  return 0;
}

int run_plan_command(const ConfigOptions& options, int world_size) {
  print0_line(plan_report(load_command_config(options), world_size));
  return 0;
}

}  // namespace cr
