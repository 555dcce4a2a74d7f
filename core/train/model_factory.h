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

// What an override changes beyond the key itself (a preset's d_model given without d_ff makes
// d_ff 4 x d_model), for plan and train to print; empty when nothing is derived.
std::string derived_dimensions_note(const ModelConfig& config);

}  // namespace cr
