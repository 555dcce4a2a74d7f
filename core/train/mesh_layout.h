// From the parallel section of a config and a job size to a checked process mesh.
#pragma once

#include "core/config/config.h"
#include "models/model_spec.h"
#include "parallel/process_mesh.h"

namespace cr {

// Throws cr::Error naming the numbers that disagree (sizes that do not fill the world, more
// pipeline stages than layers, heads or width not divisible by the tensor size, heads not
// divisible by the all_to_all size, dropout with split layers).
ProcessMesh mesh_for(const ParallelConfig& parallel, const ModelSpec& model, int world_size);

struct BatchLayout {
  int64_t global = 0;        // sequences per optimizer step, all ranks together
  int64_t per_rank = 0;      // this rank's share
  int64_t accumulation = 0;  // micro-batches per rank per step
};

// train.global_batch_size split over `data_parallel` ranks; throws cr::Error naming the numbers
// when it does not split into whole micro-batches.
BatchLayout batch_layout(const TrainConfig& train, int data_parallel);

// Throws cr::Error when sequence parallelism cannot split data.seq_len over its ranks (`tensor`
// for split_gather, parallel.sequence.size for all_to_all, twice that for ring_attn).
void check_sequence_split(const Config& config, int tensor);

// Everything about a job of `world_size` ranks that can be checked before starting it.
void check_job_layout(const Config& config, int world_size);

}  // namespace cr
