#include <fmt/format.h>

#include "cmd/commands.h"
#include "cmd/config_source.h"
#include "core/error.h"
#include "core/log.h"
#include "core/plan.h"
#include "core/trainer.h"

namespace cr {

int run_train_command(const ConfigOptions& options, int nprocs) {
  if (nprocs > 1) {
    fail("--nprocs {}: multi-process launch is not available in this build yet; use --nprocs 1", nprocs);
  }
  const Config config = load_command_config(options);
  const TrainSummary summary = run_training(config);
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

int run_plan_command(const ConfigOptions& options) {
  print0_line(plan_report(load_command_config(options)));
  return 0;
}

}  // namespace cr
