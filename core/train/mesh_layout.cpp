#include "core/train/mesh_layout.h"

#include <optional>

#include "core/base/error.h"
#include "core/train/model_factory.h"
#include "core/train/pipeline_schedule.h"
#include "core/train/stage_partition.h"
#include "models/tensor_parallel.h"

namespace cr {

ProcessMesh mesh_for(const ParallelConfig& parallel, const ModelSpec& model, int world_size) {
  const std::optional<int> data =
      parallel.data > 0 ? std::optional<int>(static_cast<int>(parallel.data)) : std::nullopt;
  const bool own_axis = parallel.sequence.own_axis();
  if (own_axis && parallel.sequence.size < 2) {
    fail("parallel.sequence.mode {} needs parallel.sequence.size of at least 2 (the ranks splitting each "
         "sequence), got {}", parallel.sequence.mode, parallel.sequence.size);
  }
  // Split layers would draw one dropout mask per rank where the single process draws one per
  // tensor (ring_attn never forms the attention probabilities at all).
  if ((parallel.tensor.size > 1 || parallel.sequence.mode != "none") && model.dropout > 0) {
    fail("model.dropout {} with parallel.tensor {} and parallel.sequence.mode {}: tensor and sequence parallel "
         "layouts train without dropout (set model.dropout to 0)",
         model.dropout, parallel.tensor.size, parallel.sequence.mode);
  }
  if (!own_axis && parallel.sequence.size != 1) {
    fail("parallel.sequence.size {} applies to modes all_to_all and ring_attn; mode {} {}", parallel.sequence.size,
         parallel.sequence.mode, parallel.sequence.mode == "split_gather" ? "splits over the tensor group" : "splits nothing");
  }
  MeshShape shape = resolve_mesh_shape(data, static_cast<int>(parallel.pipeline.size),
                                       static_cast<int>(parallel.tensor.size),
                                       static_cast<int>(parallel.sequence.axis_size()), world_size);
  shape.order = parse_mesh_order(parallel.order);
  const TensorGridShape grid = tensor_grid_of(parallel);
  if (!grid.grid()) check_mesh_fits_model(shape, model.n_layer, model.n_head, model.d_model);
  tensor_parallel_layout(0, shape.tensor, model, parallel.sequence.mode == "split_gather", shape.sequence,
                         parallel.sequence.mode == "ring_attn", grid);
  if (parallel.sequence.mode == "split_gather" && shape.tensor == 1) {
    fail("parallel.sequence.mode split_gather splits the sequence over the tensor group, but parallel.tensor is 1");
  }
  return ProcessMesh(shape, world_size);
}

TensorGridShape tensor_grid_of(const ParallelConfig& parallel) {
  return tensor_grid_shape(parallel.tensor.mode, static_cast<int>(parallel.tensor.size),
                           static_cast<int>(parallel.tensor.depth));
}

BatchLayout batch_layout(const TrainConfig& train, const PipelineConfig& pipeline, int data_parallel) {
  const int64_t micro = train.micro_batch_size;
  const int64_t micro_batches = pipeline.microbatches > 0 ? pipeline.microbatches : 1;
  BatchLayout layout;
  layout.global = train.global_batch_size > 0 ? train.global_batch_size : micro * micro_batches * data_parallel;
  if (layout.global % (micro * data_parallel) != 0) {
    fail("train.global_batch_size {} is not a multiple of train.micro_batch_size {} x {} data-parallel ranks",
         layout.global, micro, data_parallel);
  }
  layout.per_rank = layout.global / data_parallel;
  layout.accumulation = layout.per_rank / micro;
  if (pipeline.microbatches > 0 && layout.accumulation != pipeline.microbatches) {
    fail("parallel.pipeline.microbatches {} disagrees with train.global_batch_size {} = micro_batch_size {} x {} "
         "data-parallel ranks x {} micro-batches (set one of them, or make them agree)",
         pipeline.microbatches, layout.global, micro, data_parallel, layout.accumulation);
  }
  return layout;
}

double head_cost_in_blocks(const ModelSpec& spec, int64_t seq_len) {
  ModelSpec one_less = spec;
  one_less.n_layer = spec.n_layer - 1;
  const double block = flops_per_token(spec, seq_len) - flops_per_token(one_less, seq_len);
  const double rest = flops_per_token(spec, seq_len) - block * static_cast<double>(spec.n_layer);
  return block > 0 ? rest / block : 0.0;
}

std::vector<int64_t> pipeline_stage_blocks(const Config& config, const ModelSpec& spec) {
  const PipelineConfig& pipeline = config.parallel.pipeline;
  const int64_t stages = pipeline.size * pipeline.chunks;
  if (pipeline.layers_per_stage.empty()) {
    if (spec.n_layer < stages) {
      fail("parallel.pipeline: {} stages x {} chunks need at least {} blocks, but model.n_layer is {}", pipeline.size,
           pipeline.chunks, stages, spec.n_layer);
    }
    return balanced_stage_blocks(spec.n_layer, stages, 0.0, head_cost_in_blocks(spec, config.data.seq_len));
  }
  int64_t total = 0;
  for (const int64_t blocks : pipeline.layers_per_stage) total += blocks;
  if (total != spec.n_layer) {
    fail("parallel.pipeline.layers_per_stage sums to {} blocks, but model.n_layer is {}", total, spec.n_layer);
  }
  return pipeline.layers_per_stage;
}

StageLayout stage_layout_for(const Config& config, const ModelSpec& spec, int64_t stages, int64_t stage) {
  if (stages == 1) return stage_layout({spec.n_layer}, 1, 0);
  if (config.zero.stage > 1) {
    fail("zero.stage {} with parallel.pipeline.size {}: pipeline stages keep whole gradients over their "
         "micro-batches, which ZeRO 2 and 3 shard away; use zero.stage 0 or 1 (as Colossal-AI requires)",
         config.zero.stage, stages);
  }
  return stage_layout(pipeline_stage_blocks(config, spec), stages, stage);
}

std::vector<Instruction> step_program(const Config& config, const StageLayout& layout, int64_t stage,
                                      int64_t micro_batches) {
  if (layout.stages == 1) return no_pipeline_schedule(micro_batches);
  const PipelineScheduleKind kind = parse_pipeline_schedule(config.parallel.pipeline.schedule);
  return pipeline_schedule(kind, {layout.stages, stage, micro_batches, layout.virtual_stages / layout.stages});
}

void check_sequence_split(const Config& config, int tensor) {
  if (config.parallel.sequence.mode == "split_gather" && config.data.seq_len % tensor != 0) {
    fail("data.seq_len {} is not divisible by parallel.tensor {}: parallel.sequence.mode split_gather gives each "
         "tensor rank an equal part of the sequence",
         config.data.seq_len, tensor);
  }
  if (config.parallel.sequence.mode == "all_to_all" && config.data.seq_len % config.parallel.sequence.size != 0) {
    fail("data.seq_len {} is not divisible by parallel.sequence.size {}: all_to_all gives each sequence rank an "
         "equal part of the sequence",
         config.data.seq_len, config.parallel.sequence.size);
  }
  if (config.parallel.sequence.mode == "ring_attn" && config.data.seq_len % (2 * config.parallel.sequence.size) != 0) {
    fail("data.seq_len {} is not divisible by 2 x parallel.sequence.size {}: ring_attn gives each sequence rank two "
         "equal parts of the sequence (one early, one late)",
         config.data.seq_len, config.parallel.sequence.size);
  }
}

void check_job_layout(const Config& config, int world_size) {
  const ProcessMesh mesh = mesh_for(config.parallel, model_spec_from_config(config.model), world_size);
  batch_layout(config.train, config.parallel.pipeline, mesh.shape().data);
  stage_layout_for(config, model_spec_from_config(config.model), mesh.shape().pipeline, 0);
  check_sequence_split(config, mesh.shape().tensor);
  const TensorGridShape grid = tensor_grid_of(config.parallel);
  if (config.train.micro_batch_size % grid.batch_parts() != 0) {
    fail("train.micro_batch_size {} does not split over the {} batch parts of parallel.tensor mode {} (q {} x depth "
         "{}): each grid row holds its own part of every micro-batch",
         config.train.micro_batch_size, grid.batch_parts(), config.parallel.tensor.mode, grid.q, grid.depth);
  }
}

}  // namespace cr
