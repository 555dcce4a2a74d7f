// The ParameterStrategy a config asks for: ZeRO's flat buffers (zero.stage 0-3), or Gemini's
// chunks when zero.placement_policy is set.
#pragma once

#include <memory>

#include "core/config/config.h"
#include "memory/flat_parameters.h"
#include "memory/parameter_strategy.h"

namespace cr {

class Communicator;
class WeightSource;

// group: the ranks holding the same parameters; model_parallel: the ranks holding the model's
// other parts (ZeroStrategy's arguments).
std::unique_ptr<ParameterStrategy> make_parameter_strategy(const Config& config, const ModuleParameters& params,
                                                           const WeightSource* source, int64_t blocks,
                                                           torch::Device device, torch::ScalarType compute_dtype,
                                                           Communicator* group, Communicator* model_parallel);

}  // namespace cr
