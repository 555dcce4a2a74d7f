#include "memory/strategy_factory.h"

#include "core/base/strings.h"
#include "memory/gemini/gemini_strategy.h"
#include "memory/gemini/heap_meter.h"
#include "memory/zero_strategy.h"

namespace cr {

std::unique_ptr<ParameterStrategy> make_parameter_strategy(const Config& config, const ModuleParameters& params,
                                                           const WeightSource* source, int64_t blocks,
                                                           torch::Device device, torch::ScalarType compute_dtype,
                                                           Communicator* group, Communicator* model_parallel) {
  if (config.zero.placement_policy) {
    GeminiOptions options = gemini_options(config.zero);
    options.device = device;
    options.compute_dtype = compute_dtype;
    options.optimizer = config.optimizer;
    if (config.runtime.device_memory_limit) {
      options.device_budget = parse_byte_size(*config.runtime.device_memory_limit, "runtime.device_memory_limit");
    } else if (options.placement.policy == "auto") {
      options.device_budget = device_capacity(device);  // as Colossal-AI: the GPU's memory (0 on the CPU: none)
    }
    return std::make_unique<GeminiStrategy>(params, source, blocks, options, group, model_parallel);
  }
  ZeroOptions options;
  options.device = device;
  options.stage = static_cast<int>(config.zero.stage);
  options.compute_dtype = compute_dtype;
  options.master_weights = config.precision.master_weights;
  options.bucket_bytes = static_cast<int64_t>(config.parallel.bucket_mb * 1024 * 1024);
  options.overlap = config.zero.overlap_communication;
  options.optimizer = config.optimizer;
  return std::make_unique<ZeroStrategy>(params, source, blocks, options, group, model_parallel);
}

}  // namespace cr
