// From the model section of a config to a model: preset lookup, explicit overrides, checks.
#pragma once

#include "core/config.h"
#include "models/gpt2.h"
#include "models/model_spec.h"

namespace cr {

// The preset's dimensions with every explicitly given key replacing the preset's value.
ModelSpec model_spec_from_config(const ModelConfig& config);

}  // namespace cr
