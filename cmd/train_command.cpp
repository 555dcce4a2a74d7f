#include <fmt/format.h>

#include "cmd/commands.h"
#include "cmd/config_source.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/plan/plan.h"
#include "cmd/job.h"
#include "core/train/runtime.h"
#include "core/train/trainer.h"

namespace cr {

int run_train_command(const ConfigOptions& options, const LaunchEnvironment& launch) {
  announce_launch_rank(launch);
  Config config = load_command_config(options);
  adapt_progress_bar(config, launch);
  JobMembership job(launch, config);
  const TrainSummary summary = job.train(config);
  if (summary.interrupted) return 130;
  if (!summary.losses.empty()) {
    const RunTotals& totals = summary.totals;
    std::string line = fmt::format("done: {} steps, final loss {:.4f}", summary.losses.size(), summary.losses.back());
    if (!summary.val_losses.empty()) line += fmt::format(", val_loss {:.4f}", summary.val_losses.back().second);
    if (totals.best_val_loss) line += fmt::format(" (best {:.4f})", *totals.best_val_loss);
    line += fmt::format(", {:.1f} s wall, {:.0f} tokens/s mean", totals.wall_s, totals.mean_tokens_per_s);
    if (summary.last_checkpoint) line += ", checkpoint " + *summary.last_checkpoint;
    print0_line(line);
  } else {
    print0("nothing to do: the checkpoint is already at step {} of {}", summary.first_step, config.train.steps);
  }
  return 0;
}

int run_plan_command(const ConfigOptions& options, const PlanOptions& plan) {
  print0_line(plan_report(load_command_config(options), plan));
  return 0;
}

}  // namespace cr
