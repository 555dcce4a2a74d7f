// From the model section of a config to a model: preset lookup, explicit overrides, checks.
#pragma once

#include "core/config/config.h"
#include "models/causal_lm.h"
#include "models/model_spec.h"

namespace cr {

// The preset's dimensions (or the architecture's defaults without a preset) with every
// explicitly given key replacing the preset's value. Throws cr::Error when model.arch and the
// preset's architecture differ.
ModelSpec model_spec_from_config(const ModelConfig& config);

}  // namespace cr
