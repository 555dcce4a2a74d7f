#include "core/infer/inference_model.h"

#include <filesystem>

#include "core/base/error.h"
#include "core/infer/causal_lm_decoder.h"
#include "core/train/hf_import.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "core/train/runtime.h"
#include "core/train/train_checkpoint.h"

namespace cr {

namespace {

struct WeightsSource {
  std::string dir;
  bool training_checkpoint;  // else model.init_from: a checkpoint or a Hugging Face directory
};

WeightsSource weights_source(const Config& config) {
  const std::string root =
      config.checkpoint.dir.value_or((std::filesystem::path(config.runtime.run_dir) / "checkpoints").string());
  if (const auto checkpoint = checkpoint_to_resume(config.checkpoint, root)) return {*checkpoint, true};
  if (config.model.init_from) return {*config.model.init_from, false};
  fail("no weights to load: no checkpoint under {} (checkpoint.resume {}) and no model.init_from; train first "
       "or set model.init_from",
       root, config.checkpoint.resume);
}

}  // namespace

std::string inference_weights_dir(const Config& config) { return weights_source(config).dir; }

Config inference_layout(Config config) {
  config.parallel.sequence = SequenceParallelConfig{};
  // Decoding holds a few tokens per sequence: the tensor ranks split the layers in 1d whatever
  // the run trained with (checkpoints load in any layout).
  config.parallel.tensor.mode = "1d";
  config.parallel.tensor.depth = 1;
  config.model.dropout = 0.0;
  return config;
}

void check_inference_layout(const Config& config, int world_size) {
  const Config layout = inference_layout(config);
  const MeshShape mesh = mesh_for(layout.parallel, model_spec_from_config(layout.model), world_size).shape();
  if (mesh.data > 1 || mesh.pipeline > 1) {
    fail("eval, generate and serve split the model over tensor-parallel ranks only: {} ranks with parallel.tensor {} "
         "leave data {} x pipeline {}; run with --nprocs {}",
         world_size, mesh.tensor, mesh.data, mesh.pipeline, mesh.tensor);
  }
}

InferenceModel load_inference_model(const Config& config, const ParallelContext& context) {
  check_inference_layout(config, context.world_size());
  InferenceModel loaded;
  loaded.spec = model_spec_from_config(config.model);
  loaded.device = resolve_device(config.runtime);
  const WeightsSource source = weights_source(config);
  loaded.weights_from = source.dir;
  loaded.model = build_model_skeleton(loaded.spec, make_tensor_parallel(context.device_group(Axis::Tensor), loaded.spec,
                                                                        /*sequence_parallel=*/false));
  auto params = module_parameters(*loaded.model);
  // The trainer's two loading paths, so that what loads for training loads here.
  std::unique_ptr<WeightSource> weights;
  if (source.training_checkpoint) {
    weights = std::make_unique<CheckpointWeights>(source.dir, params.entries);
  } else {
    weights = open_init_weights(source.dir, params.entries, loaded.spec);
  }
  loaded.storage =
      std::make_unique<FlatParameters>(std::move(params), *weights, compute_dtype(config.precision), loaded.device);
  loaded.model->eval();
  return loaded;
}

std::unique_ptr<CachedDecoder> make_decoder(InferenceModel& model) { return make_cached_decoder(model.model); }

}  // namespace cr
