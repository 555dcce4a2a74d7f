// From the parallel section of a config and a job size to a checked process mesh.
#pragma once

#include "core/config/config.h"
#include "core/train/pipeline_stage.h"
#include "core/train/schedule.h"
#include "models/model_spec.h"
#include "parallel/process_mesh.h"
#include "parallel/tensor_grid.h"

namespace cr {

// Throws cr::Error naming the numbers that disagree (sizes that do not fill the world, more
// pipeline stages than layers, heads or width not divisible by the tensor size or its grid,
// heads not divisible by the all_to_all size, dropout with split layers).
ProcessMesh mesh_for(const ParallelConfig& parallel, const ModelSpec& model, int world_size);

// parallel.tensor's grid: 1d, or 2d / 2.5d / 3d with its q and depth (cr::Error naming the
// numbers when the size does not form the mode's grid).
TensorGridShape tensor_grid_of(const ParallelConfig& parallel);

struct BatchLayout {
  int64_t global = 0;        // sequences per optimizer step, all ranks together
  int64_t per_rank = 0;      // this rank's share
  int64_t accumulation = 0;  // micro-batches per rank per step
};

// train.global_batch_size split over `data_parallel` ranks, or with global_batch_size 0, the
// micro-batch times parallel.pipeline.microbatches (when set) per data rank; throws cr::Error
// naming the numbers when it does not split into whole micro-batches or disagrees with the
// pipeline's micro-batches.
BatchLayout batch_layout(const TrainConfig& train, const PipelineConfig& pipeline, int data_parallel);

// The LM head's compute per token (its loss included) against one block's.
double head_cost_in_blocks(const ModelSpec& spec, int64_t seq_len);

// Blocks of each virtual pipeline stage, stage s's chunk c at c * stages + s:
// parallel.pipeline.layers_per_stage, or balanced by compute with the LM head counted on the
// last. cr::Error when the list does not sum to model.n_layer or a stage would have no block.
std::vector<int64_t> pipeline_stage_blocks(const Config& config, const ModelSpec& spec);

// Pipeline stage `stage`'s part of the model: every block, embedding and head without a pipeline.
StageLayout stage_layout_for(const Config& config, const ModelSpec& spec, int64_t stages, int64_t stage);

// The instructions of one training step on a rank of `layout` at stage `stage`: the configured
// pipeline schedule, or gradient accumulation without a pipeline.
std::vector<Instruction> step_program(const Config& config, const StageLayout& layout, int64_t stage,
                                      int64_t micro_batches);

// Throws cr::Error when sequence parallelism cannot split data.seq_len over its ranks (`tensor`
// for split_gather, parallel.sequence.size for all_to_all, twice that for ring_attn).
void check_sequence_split(const Config& config, int tensor);

// Everything about a job of `world_size` ranks that can be checked before starting it.
void check_job_layout(const Config& config, int world_size);

}  // namespace cr
