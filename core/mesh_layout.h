// From the parallel section of a config and a job size to a checked process mesh.
#pragma once

#include "core/config.h"
#include "models/model_spec.h"
#include "parallel/process_mesh.h"

namespace cr {

// Throws cr::Error naming the numbers that disagree (sizes that do not fill the world, more
// pipeline stages than layers, heads or width not divisible by the tensor size).
ProcessMesh mesh_for(const ParallelConfig& parallel, const ModelSpec& model, int world_size);

}  // namespace cr
