// The run directory and the checkpoint root, made ready by rank 0 before any work: created
// (errors name the key that gave the path), leftovers of interrupted saves deleted, and a fresh
// start refused where an earlier run already wrote.
#pragma once

#include <string>

#include "core/config/config.h"

namespace cr {

// checkpoint.dir, or checkpoints/ inside runtime.run_dir.
std::string checkpoint_root(const Config& config);

// Creates runtime.run_dir and the checkpoint root and writes the resolved config.yaml. With
// `resuming` false and checkpoint.resume none, refuses a run directory or checkpoint root that
// holds an earlier run (metrics or checkpoints), which a fresh run would overwrite or prune.
void prepare_run_directories(const Config& config, bool resuming);

}  // namespace cr
