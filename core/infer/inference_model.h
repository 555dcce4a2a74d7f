// A trained model ready for evaluation or generation: built from the config's model section,
// with the weights a run left behind.
//
// Which weights: the checkpoint training would resume from (checkpoint.resume: "auto" takes
// the newest one under checkpoint.dir, by default <runtime.run_dir>/checkpoints; a directory
// names one), else model.init_from (a checkpoint or a Hugging Face directory); both load the
// way training loads them. So after
// `train --config X`, `eval --config X` measures the weights training ended with.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/infer/generation.h"
#include "memory/flat_parameters.h"
#include "models/causal_lm.h"
#include "parallel/parallel_context.h"

namespace cr {

struct InferenceModel {
  ModelSpec spec;
  torch::Device device = torch::kCPU;
  CausalLM model;                           // in eval mode
  std::unique_ptr<FlatParameters> storage;  // owns the buffer the model's parameters view
  std::string weights_from;                 // the checkpoint directory loaded
};

// The directory the weights come from, by the rule above; cr::Error naming both keys when
// there is neither a checkpoint nor model.init_from.
std::string inference_weights_dir(const Config& config);

// A training config as inference runs it: its tensor parallelism, no sequence parallelism (each
// rank sees whole sequences) and no dropout (evaluation mode).
Config inference_layout(Config config);

// cr::Error unless a job of `world_size` ranks is all tensor-parallel under inference_layout()
// (inference splits the model; data-parallel or pipeline ranks would have nothing to do).
void check_inference_layout(const Config& config, int world_size);

// Builds the model on runtime.device in precision.dtype and loads inference_weights_dir(): this
// rank's slices when `context` (built from inference_layout(config)) has a tensor group (its
// ranks must all run the same passes), the whole model otherwise.
InferenceModel load_inference_model(const Config& config, const ParallelContext& context);

// A decoder for generation over the loaded model's weights.
std::unique_ptr<CachedDecoder> make_decoder(InferenceModel& model);

}  // namespace cr
