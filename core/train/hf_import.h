// Starting a run from existing weights (model.init_from): a colossal-run checkpoint
// directory (it has manifest.json) or a Hugging Face model directory (it has config.json).
#pragma once

#include <string>

#include "memory/flat_parameters.h"
#include "models/model_spec.h"

namespace cr {

// Fills params (fp32 master and compute copy) from `dir`; only weights, no optimizer state.
void load_init_weights(const std::string& dir, FlatParameters& params, const ModelSpec& spec);

// The Hugging Face case: checks dir/config.json against `spec` (naming the dimension that
// differs), then loads every parameter, converting F16/BF16 to fp32 and Conv1D layouts to
// ours. Tensors the model does not have (attention-mask buffers, a tied LM head) are ignored.
void load_hf_weights(const std::string& dir, FlatParameters& params, const ModelSpec& spec);

}  // namespace cr
