// Resuming compares the config a checkpoint was trained with (its config.yaml) with the one that
// resumes it: another model (architecture or any dimension) is refused naming the keys; changes
// a run may make on the way (steps, learning rate schedule, batch split, parallel layout, ...)
// are returned for a printed note.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config/config.h"

namespace cr {

// "train.steps: 8 -> 16" for each key that changed and is applied; throws cr::Error naming
// `checkpoint_dir` and every differing model key when the model differs. runtime.*,
// checkpoint.* and model.init_from are the invocation's own and never compared.
std::vector<std::string> resume_config_changes(const Config& recorded, const Config& current,
                                               const std::string& checkpoint_dir);

// The checkpoint's recorded config, or nullopt with a warning printed when it has none or it
// no longer loads (a checkpoint from an older release): the tensor shapes are then the check.
std::optional<Config> recorded_config(const std::string& checkpoint_dir);

}  // namespace cr
