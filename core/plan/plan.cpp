#include "core/plan/plan.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/plan/gemini_plan.h"
#include "core/plan/grid_traffic.h"
#include "core/train/lr_schedule.h"
#include "core/train/mesh_layout.h"
#include "core/train/pipeline_schedule.h"
#include "core/train/schedule_timeline.h"
#include "core/train/runtime.h"
#include "core/train/stage_executor.h"
#include "memory/zero_parameters.h"
#include "models/causal_lm.h"
#include "models/lm_loss.h"
#include "models/mixed_precision.h"
#include "core/train/model_factory.h"
#include "core/base/strings.h"
#include "parallel/communicator.h"

namespace cr {

namespace {

bool sequence_parallel(const Config& config) { return config.parallel.sequence.mode == "split_gather"; }

// Ranks of the sequence axis (all_to_all, ring_attn), each holding 1/P of every sequence.
double sequence_ranks(const Config& config) { return static_cast<double>(config.parallel.sequence.axis_size()); }

// Tensor rank 0's parameters: its slices and the whole ones, as the trainer lays them out.
// Rank 0's: tensor rank 0's slices of the first pipeline stage.
std::vector<FlatEntry> rank_parameters(const ModelSpec& spec, const Config& config) {
  const int tensor = static_cast<int>(config.parallel.tensor.size);
  const int64_t stages = config.parallel.pipeline.size;
  if (tensor == 1 && stages == 1) return flat_layout(parameter_shapes(spec));
  // A skeleton's parameters have one element of storage each: nothing model-sized is allocated.
  auto skeleton = build_model_skeleton(spec, tensor_parallel_layout(0, tensor, spec, sequence_parallel(config), 1,
                                                                    false, tensor_grid_of(config.parallel)));
  const StageLayout first_stage = stage_layout_for(config, spec, stages, 0);
  return module_parameters(*skeleton, skeleton->blocks(), owned_by_stage(*skeleton, first_stage)).entries;
}

// Micro-batches per step on each data rank: parallel.pipeline.microbatches, or what the global
// batch gives (at least one: `plan` shows layouts whose batch does not split yet).
int64_t planned_micro_batches(const Config& config, int64_t data_ranks) {
  if (config.parallel.pipeline.microbatches > 0) return config.parallel.pipeline.microbatches;
  return std::max<int64_t>(1, config.train.global_batch_size / (config.train.micro_batch_size * data_ranks));
}

// 2.5d of depth 1 runs as 2d.
bool same_grid(const TensorGridShape& a, const TensorGridShape& b) {
  const auto kind = [](const TensorGridShape& s) {
    return s.mode == TensorMode::TwoAndHalfD ? TensorMode::TwoD : s.mode;
  };
  return kind(a) == kind(b) && a.q == b.q && a.depth == b.depth;
}

// Every mode that fits parallel.tensor.size ranks, side by side: what a rank holds and sends.
std::string tensor_modes_section(const ModelSpec& spec, const Config& config, int data_parallel) {
  const int size = static_cast<int>(config.parallel.tensor.size);
  std::vector<std::pair<std::string, int>> modes{{"1d", 1}, {"2d", 1}, {"3d", 1}};
  for (int depth = 2; depth <= size / 4; ++depth) modes.emplace_back("2.5d", depth);
  std::string out =
      fmt::format("tensor modes over {} ranks (per rank; traffic per layer and micro-batch, and per step):\n", size);
  const double micro_batches = static_cast<double>(planned_micro_batches(config, data_parallel));
  for (const auto& [mode, depth] : modes) {
    Config variant = config;
    variant.parallel.tensor = {size, mode, depth};
    const std::string name = mode == "2.5d" ? fmt::format("2.5d depth {}", depth) : mode;
    try {
      tensor_parallel_layout(0, size, spec, false, 1, false, tensor_grid_of(variant.parallel));
    } catch (const std::runtime_error& e) {
      // Only the modes whose grid the size forms are listed; those the model does not fit say why.
      if (std::string(e.what()).find("does not fit the model") == std::string::npos && mode != "1d") continue;
      out += fmt::format("  {:<13} does not fit: {}\n", name, e.what());
      continue;
    }
    int64_t parameters = 0;
    for (const auto& entry : rank_parameters(spec, variant)) parameters += entry.numel;
    const double traffic = layer_traffic(spec, variant, data_parallel).total();
    const bool mine = same_grid(tensor_grid_of(variant.parallel), tensor_grid_of(config.parallel));
    out += fmt::format("  {:<13} parameters {:>12}  activations {:>10} per block  traffic {:>10} per layer, {:>10} per "
                       "step{}\n",
                       name, with_thousands(parameters), human_bytes(activation_bytes(spec, variant).per_block),
                       human_bytes(traffic / (micro_batches * static_cast<double>(spec.n_layer))),
                       human_bytes(traffic), mine ? "  <- this config" : "");
  }
  return out;
}

}  // namespace

ActivationBytes activation_bytes(const ModelSpec& spec, const Config& config) {
  // A grid rank (2d, 2.5d, 3d) holds 1/batch_parts of the sequences and 1/q of the heads and
  // hidden units, but keeps its linear layers' gathered inputs whole: attention's and the MLP's
  // (d each), the output projection's (d) and the down projection's (d_ff).
  const TensorGridShape grid = tensor_grid_of(config.parallel);
  const double t = grid.grid() ? grid.q : static_cast<double>(config.parallel.tensor.size);
  const double compute_bytes = static_cast<double>(c10::elementSize(compute_dtype(config.precision)));
  // Tensors a block keeps for backward, in elements per token (counted with the CPU allocator's
  // exact bytes: scripts/bench-activations.sh): the two norms' inputs and outputs (4 d); q, k
  // and v copied into heads and the attention output (2 d + 2 kv); the MLP's hidden tensors
  // (2 d_ff, a gated MLP 4); and the attention probabilities (one per head and position pair).
  // Tensor parallelism divides the per-head and per-unit ones by T; split_gather also the norms',
  // while the two gathered inputs of the column-parallel layers stay whole.
  const double b = static_cast<double>(config.train.micro_batch_size) / grid.batch_parts();
  const double s = static_cast<double>(config.data.seq_len);
  const double d = static_cast<double>(spec.d_model);
  const double ff = static_cast<double>(spec.d_ff);
  const double kv = static_cast<double>(spec.n_kv_head * (spec.d_model / spec.n_head));
  const bool gated = spec.activation == "silu";
  const double split = 2.0 * d + 2.0 * kv + (gated ? 4.0 : 2.0) * ff;
  double whole = sequence_parallel(config) ? 4.0 * d / t + 2.0 * d : 4.0 * d;
  if (grid.grid()) whole = 4.0 * d / t + 3.0 * d + ff;
  const double hidden_split = sequence_parallel(config) || grid.grid() ? t : 1.0;  // of a block's input
  // all_to_all ranks hold 1/P of the tokens outside attention and 1/P of the heads inside it;
  // ring_attn keeps no probabilities (backward recomputes them block by block).
  const double p = sequence_ranks(config);
  const double score_elements = config.parallel.sequence.mode == "ring_attn" ? 0.0 : b * spec.n_head * s * s / t;
  const double block_elements = b * s * (whole + split / t) + score_elements;
  ActivationBytes bytes;
  bytes.per_block = block_elements / p * compute_bytes;
  // Backward holds one layer's probabilities' gradient beyond them.
  bytes.recomputed_block = score_elements / p * compute_bytes;
  // Selective recompute keeps no probabilities; its rerun holds a layer's probabilities and their
  // gradient. Full recompute keeps each block's input; its rerun holds one block's activations
  // and the probabilities' gradient.
  const std::string& recompute = config.train.activation_checkpointing;
  if (recompute == "selective") {
    bytes.per_block = (block_elements - score_elements) / p * compute_bytes;
    bytes.recomputed_block = 2.0 * score_elements / p * compute_bytes;
  } else if (recompute == "full") {
    bytes.per_block = b * s * d / hidden_split / p * compute_bytes;
    bytes.recomputed_block = (block_elements + score_elements) / p * compute_bytes;
  }
  // Zero-bubble's deferred weight gradients keep, per block, the linear layers' inputs (attention,
  // its output projection, the MLP's two; q, k, v and a gated MLP's two share theirs) and their
  // output gradients.
  const double mlp_outputs = gated ? 2.0 * ff : ff;
  bytes.deferred_weight_gradients =
      b * s * ((3.0 * d + ff) + (2.0 * d + 2.0 * kv + mlp_outputs + d)) / t / p * compute_bytes;
  // The fused LM head keeps the hidden-state gradient (and the weight gradient, in transients).
  bytes.head = 3.0 * b * s * d / (grid.grid() ? t : 1.0) / p * compute_bytes;
  return bytes;
}

MemoryEstimate estimate_memory(const ModelSpec& spec, const Config& config, int data_parallel) {
  const auto entries = rank_parameters(spec, config);
  const auto bucket_bytes = static_cast<int64_t>(config.parallel.bucket_mb * 1024 * 1024);
  // Rank 0 holds the largest shard.
  const ShardLayout layout(make_buckets(entries, bucket_bytes), 0, data_parallel);
  const torch::ScalarType dtype = compute_dtype(config.precision);
  MemoryEstimate m;
  static_cast<StateBytes&>(m) = ZeroParameters::predict(entries, layout, dtype, static_cast<int>(config.zero.stage),
                                                        config.zero.overlap_communication,
                                                        config.precision.master_weights);
  const int64_t compute_bytes = static_cast<int64_t>(c10::elementSize(dtype));
  const ActivationBytes activation = activation_bytes(spec, config);
  const PipelineConfig& pipeline = config.parallel.pipeline;
  if (pipeline.size > 1) {
    // The first stage's, under the configured schedule.
    const int64_t data_ranks = std::max<int64_t>(1, data_parallel / config.parallel.sequence.axis_size());
    const PipelineTimeline timeline = pipeline_timeline(parse_pipeline_schedule(pipeline.schedule), pipeline.size,
                                                        planned_micro_batches(config, data_ranks), pipeline.chunks);
    m.activations = static_cast<int64_t>(stage_activations(spec, config, timeline, pipeline.chunks).front().bytes);
  } else {
    m.activations = static_cast<int64_t>(activation.per_block * static_cast<double>(spec.n_layer) + activation.head +
                                         activation.recomputed_block);
  }
  // The output embedding's gradient, vocab x d, is the largest short-lived tensor. The fused
  // head forms it in fp32 during forward; its backward scales it into a new fp32 tensor (and
  // casts that to the compute dtype). With tied embeddings autograd holds that gradient until
  // the input embedding's own (dense) one arrives at the end of backward, and adds the two.
  const int64_t vocab_rows = shard_range(spec.vocab_size, 0, static_cast<int>(config.parallel.tensor.size)).second;
  const int64_t embedding = vocab_rows * embedding_dim(spec);
  // The head works through the logits a chunk of rows at a time: the chunk's logits (compute
  // dtype), fp32 log-probabilities and, below fp32, their gradient cast back.
  const int64_t rows = config.train.micro_batch_size * config.data.seq_len / static_cast<int64_t>(sequence_ranks(config));
  const int64_t chunk = loss_chunk_rows(rows, spec.vocab_size, !resolve_device(config.runtime).is_cpu()) *
                        vocab_rows * (compute_bytes + 4 + (dtype == torch::kFloat ? 0 : compute_bytes));
  const int64_t head_moment = embedding * (8 + (dtype == torch::kFloat ? 0 : compute_bytes)) + chunk;
  const int64_t end_moment = embedding * compute_bytes * (spec.tied_embeddings ? 3 : 1);
  m.transients = std::max(head_moment, end_moment);
  // Gradient reductions land in a temporary of the rank's part (MPI's send and receive buffers
  // may not overlap): every bucket's at once at stages 0-1, where all are in flight when
  // backward ends; at most two buckets' at stages 2-3, bounded by the staging buffers.
  if (layout.sharded()) {
    int64_t largest = 0;
    for (const auto& slice : layout.slices()) largest = std::max(largest, slice.numel);
    m.transients += 4 * (config.zero.stage <= 1 ? layout.shard_numel() : 2 * largest);
  }
  if (resolve_device(config.runtime).is_cpu()) m.process = process_baseline_bytes();
  return m;
}

LayerTraffic layer_traffic(const ModelSpec& spec, const Config& config, int data_parallel) {
  LayerTraffic traffic;
  const int tensor = static_cast<int>(config.parallel.tensor.size);
  const double p = sequence_ranks(config);
  if (tensor == 1 && p == 1.0) return traffic;
  const double t = tensor;
  const double ring = 2.0 * (t - 1.0) / t;  // of an all-reduce's buffer, per rank
  const int64_t global = config.train.global_batch_size > 0 ? config.train.global_batch_size
                                                            : config.train.micro_batch_size * data_parallel;
  const double micro_batches = static_cast<double>(global / (config.train.micro_batch_size * data_parallel));
  if (tensor_grid_of(config.parallel).grid()) {
    const GridTraffic grid = grid_traffic_per_micro_batch(spec, config);
    traffic.activations = micro_batches * grid.activations;
    traffic.weights = micro_batches * grid.weights;
    traffic.gradients = micro_batches * grid.gradients;
    traffic.loss = micro_batches * grid.loss;
    return traffic;
  }
  const torch::ScalarType dtype = compute_dtype(config.precision);
  const double activation = static_cast<double>(
      c10::elementSize(activation_dtype(dtype, resolve_device(config.runtime))));
  // A rank's tokens: all_to_all ranks hold 1/P of each sequence outside attention.
  const double tokens = static_cast<double>(config.train.micro_batch_size * config.data.seq_len) / p;
  const double kv_width = 2.0 * static_cast<double>(spec.n_kv_head * (spec.d_model / spec.n_head)) / t;
  const double layers_per_step = micro_batches * static_cast<double>(spec.n_layer);
  if (config.parallel.sequence.mode == "all_to_all") {
    // q and the output (d_model wide), k and v (the key/value heads), this tensor rank's share.
    const double width = 2.0 * static_cast<double>(spec.d_model) / t + kv_width;
    traffic.sequence = layers_per_step * 2.0 * (p - 1.0) / p * tokens * width * activation;
  } else if (config.parallel.sequence.mode == "ring_attn") {
    traffic.sequence = layers_per_step * tokens * kv_width * (2.0 * (p - 1.0) * activation + p * 4.0);
  }
  if (tensor == 1) return traffic;
  const double layers = 4.0 * static_cast<double>(spec.n_layer) * static_cast<double>(spec.d_model);
  const double ends = static_cast<double>(embedding_dim(spec) + spec.d_model);  // embedding out, loss input
  traffic.activations = micro_batches * ring * tokens * (layers + ends) * activation;
  // Per chunk of tokens: an all-reduce of their maxima, one of their sums and target logits (fp32).
  traffic.loss = micro_batches * ring * 3.0 * tokens * 4.0;
  double summed = 0;
  for (const auto& entry : rank_parameters(spec, config)) {
    if (entry.slice.whole() && sequence_parallel(config)) summed += ring * static_cast<double>(entry.numel);
  }
  if (spec.n_kv_head < tensor) {
    const double sharing = t / static_cast<double>(spec.n_kv_head);
    const double head = static_cast<double>(spec.d_model / spec.n_head) * (spec.d_model + (spec.bias ? 1 : 0));
    summed += 2.0 * (sharing - 1.0) / sharing * 2.0 * head * static_cast<double>(spec.n_layer);
  }
  traffic.gradients = micro_batches * summed * static_cast<double>(c10::elementSize(dtype));
  return traffic;
}

// The configured pipeline with `chunks` chunks per stage: its layers_per_stage when they are
// for that many chunks, else balanced ones. Blocks summed per stage.
std::vector<int64_t> blocks_per_stage(const Config& config, const ModelSpec& spec, int64_t chunks) {
  Config layout = config;
  PipelineConfig& pipeline = layout.parallel.pipeline;
  if (pipeline.chunks != chunks) pipeline.layers_per_stage.clear();
  pipeline.chunks = chunks;
  const std::vector<int64_t> virtual_blocks = pipeline_stage_blocks(layout, spec);
  std::vector<int64_t> blocks(static_cast<size_t>(pipeline.size), 0);
  for (size_t k = 0; k < virtual_blocks.size(); ++k) blocks[k % blocks.size()] += virtual_blocks[k];
  return blocks;
}

PipelineTimeline pipeline_timeline(PipelineScheduleKind kind, int64_t stages, int64_t micro_batches, int64_t chunks,
                                   const ComputeCosts& costs) {
  std::vector<std::vector<Instruction>> programs;
  for (int64_t s = 0; s < stages; ++s) programs.push_back(pipeline_schedule(kind, {stages, s, micro_batches, chunks}));
  ComputeCosts chunk_costs = costs;  // a chunk does 1/V of its stage's work
  for (double* cost : {&chunk_costs.forward, &chunk_costs.backward, &chunk_costs.backward_input,
                       &chunk_costs.backward_weight}) {
    *cost /= static_cast<double>(chunks);
  }
  return simulate_pipeline(programs, chunks, chunk_costs);
}

std::vector<StageActivations> stage_activations(const ModelSpec& spec, const Config& config,
                                                const PipelineTimeline& timeline, int64_t chunks) {
  const int64_t P = config.parallel.pipeline.size;
  const std::vector<int64_t> blocks = blocks_per_stage(config, spec, chunks);
  const ActivationBytes activation = activation_bytes(spec, config);
  std::vector<StageActivations> out;
  for (int64_t s = 0; s < P; ++s) {
    StageActivations stage;
    // Chunks of micro-batches held, as whole micro-batches of the stage's blocks.
    stage.micro_batches =
        static_cast<double>(timeline.stages[static_cast<size_t>(s)].peak_in_flight) / static_cast<double>(chunks);
    const auto& timed = timeline.stages[static_cast<size_t>(s)];
    const double stage_blocks = static_cast<double>(blocks[static_cast<size_t>(s)]);
    stage.bytes = stage.micro_batches * (activation.per_block * stage_blocks + (s == P - 1 ? activation.head : 0.0)) +
                  static_cast<double>(timed.peak_pending_weights) / static_cast<double>(chunks) *
                      activation.deferred_weight_gradients * stage_blocks +
                  activation.recomputed_block;
    out.push_back(stage);
  }
  return out;
}

std::string pipeline_section(const ModelSpec& spec, const Config& config, const MeshShape& shape,
                             int64_t micro_batches) {
  const int64_t P = shape.pipeline, M = micro_batches;
  const PipelineScheduleKind configured = parse_pipeline_schedule(config.parallel.pipeline.schedule);
  const std::vector<int64_t> blocks = blocks_per_stage(config, spec, 1);
  std::string out = fmt::format(
      "pipeline: {} stages x {} micro-batches per step; blocks per stage {} (the embedding on the first stage, the LM "
      "head on the last, costing {:.2f} blocks); training runs {} (*)\n",
      P, M, fmt::join(blocks, ", "), head_cost_in_blocks(spec, config.data.seq_len), config.parallel.pipeline.schedule);
  out += "  schedule           bubble   activations held at the peak, per stage (micro-batches: bytes)\n";
  for (const auto kind : {PipelineScheduleKind::GPipe, PipelineScheduleKind::OneFOneB, PipelineScheduleKind::Interleaved,
                          PipelineScheduleKind::ZeroBubble}) {
    const bool interleaved = kind == PipelineScheduleKind::Interleaved;
    const int64_t V = !interleaved ? 1 : configured == kind ? config.parallel.pipeline.chunks : 2;
    if (interleaved && (M % P != 0 || spec.n_layer < P * V)) continue;
    const PipelineTimeline timeline = pipeline_timeline(kind, P, M, V);
    const std::vector<StageActivations> held = stage_activations(spec, config, timeline, V);
    std::vector<std::string> stages;
    for (const StageActivations& stage : held) {
      stages.push_back(fmt::format("{:g}: {}", stage.micro_batches, human_bytes(stage.bytes)));
    }
    std::string name = interleaved ? fmt::format("interleaved (V={})", V) : pipeline_schedule_name(kind);
    if (kind == configured) name += " *";
    out += fmt::format("  {:<18} {:<8.3f} {}\n", name, timeline.bubble_ratio(), fmt::join(stages, " | "));
  }
  return out;
}

std::string device_fit_section(const ModelSpec& spec, const Config& config, int data_parallel, int64_t device_bytes) {
  const auto peak = [&](const Config& variant) { return estimate_memory(spec, variant, data_parallel).total(); };
  const int64_t planned = peak(config);
  const auto share = [&](int64_t bytes) {
    return fmt::format("{} ({:.0f}% of {})", human_bytes(static_cast<double>(bytes)),
                       100.0 * static_cast<double>(bytes) / static_cast<double>(device_bytes),
                       human_bytes(static_cast<double>(device_bytes)));
  };
  if (planned <= device_bytes) {
    return fmt::format("fits: the predicted peak per rank is {}\n", share(planned));
  }
  std::string out = fmt::format("does not fit: the predicted peak per rank is {}\n", share(planned));
  Config zero3 = config, recompute = config, both = config;
  zero3.zero.stage = both.zero.stage = 3;
  recompute.train.activation_checkpointing = both.train.activation_checkpointing = "full";
  const bool pipelined = config.parallel.pipeline.size > 1;  // ZeRO 2 and 3 do not run with a pipeline
  std::vector<std::pair<std::string, const Config*>> options;
  if (config.zero.stage < 3 && !pipelined && data_parallel > 1) options.emplace_back("zero.stage 3", &zero3);
  if (config.train.activation_checkpointing != "full") {
    options.emplace_back("train.activation_checkpointing full", &recompute);
    if (config.zero.stage < 3 && !pipelined && data_parallel > 1) options.emplace_back("both", &both);
  }
  for (const auto& [name, variant] : options) {
    const int64_t bytes = peak(*variant);
    out += fmt::format("  with {}: {}{}\n", name, share(bytes), bytes <= device_bytes ? ", fits" : "");
  }
  out += "  else: more tensor or pipeline ranks, or a smaller train.micro_batch_size\n";
  return out;
}

std::string plan_report(const Config& config, const PlanOptions& options) {
  const int world_size = options.world_size;
  const ModelSpec spec = model_spec_from_config(config.model);
  const ProcessMesh mesh = mesh_for(config.parallel, spec, world_size);
  const int64_t n = parameter_count(spec);
  // A batch that does not split over the layout is not an error here: `plan` explores layouts.
  const int64_t global_batch =
      config.train.global_batch_size > 0
          ? config.train.global_batch_size
          : config.train.micro_batch_size * std::max<int64_t>(1, config.parallel.pipeline.microbatches) * mesh.shape().data;
  const int64_t tokens_per_step = global_batch * config.data.seq_len;
  const double flops = flops_per_token(spec, config.data.seq_len);
  // ZeRO shards over data x sequence: the ranks holding the same parameters.
  const auto memory = estimate_memory(spec, config, mesh.shape().data * mesh.shape().sequence);
  auto row = [](const char* what, int64_t bytes) {
    return fmt::format("  {:<24}{:>14}  ({} bytes)\n", what, human_bytes(static_cast<double>(bytes)), with_thousands(bytes));
  };
  std::string out;
  out += fmt::format("config: {}\n", config.source);
  if (const std::string note = derived_dimensions_note(config.model); !note.empty()) out += "note: " + note + "\n";
  if (const std::string warning = schedule_warning(config.lr_schedule, config.train.steps); !warning.empty()) {
    out += "warning: " + warning + "\n";
  }
  const std::string origin = config.model.preset.value_or(
      config.model.init_from ? *config.model.init_from + "/config.json" : "explicit dimensions");
  out += fmt::format("model: {} ({}) | {} layers, {} heads, d_model {}, d_ff {}, vocab {}, max_seq_len {}\n", spec.arch,
                     origin, spec.n_layer, spec.n_head, spec.d_model, spec.d_ff, spec.vocab_size, spec.max_seq_len);
  int64_t rank_numel = 0;  // rank 0's
  for (const auto& entry : rank_parameters(spec, config)) rank_numel += entry.numel;
  out += fmt::format("parameters: {}{}\n", with_thousands(n),
                     mesh.shape().tensor > 1 || mesh.shape().pipeline > 1
                         ? fmt::format(" ({} on rank 0)", with_thousands(rank_numel))
                         : "");
  out += fmt::format("FLOPs per token (forward + backward, seq_len {}): {:.4g}\n", config.data.seq_len, flops);
  out += fmt::format("batch: global {} sequences = {} micro-batches of {} | {} tokens per step\n", global_batch,
                     global_batch / config.train.micro_batch_size, config.train.micro_batch_size,
                     with_thousands(tokens_per_step));
  out += fmt::format("FLOPs per step: {:.4g} | for {} steps: {:.4g}\n", flops * tokens_per_step, config.train.steps,
                     flops * tokens_per_step * config.train.steps);
  out += mesh.describe();
  if (out.back() != '\n') out += '\n';
  if (mesh.shape().pipeline > 1) {
    // Every stage of a data rank runs all of its micro-batches.
    out += pipeline_section(spec, config, mesh.shape(), planned_micro_batches(config, mesh.shape().data));
  }
  const int data = mesh.shape().data * mesh.shape().sequence;
  if (data > 1) {
    // Ring collectives: each rank sends (N-1)/N of the buffer per reduce-scatter or all-gather.
    const double pass = static_cast<double>(data - 1) / data * static_cast<double>(rank_numel);
    const double compute = static_cast<double>(c10::elementSize(compute_dtype(config.precision)));
    const int64_t stage = config.zero.stage;
    const double gradients = pass * 4 * (stage == 0 ? 2 : 1);
    const double weights = stage == 1 || stage == 2 ? pass * compute : 0.0;
    out += fmt::format("data-parallel traffic per rank: gradients {} per {} (fp32 reduce-scatter{}){}\n",
                       human_bytes(gradients), stage >= 2 ? "micro-batch" : "step",
                       stage == 0 ? " + all-gather" : "",
                       weights > 0 ? fmt::format(", updated weights {} per step (all-gather)", human_bytes(weights))
                       : stage == 3 ? ", weights gathered layer by layer in forward and again in backward"
                                    : "");
  }
  if (mesh.shape().tensor > 1 || mesh.shape().sequence > 1) {
    // Sequence ranks share their data rank's micro-batches.
    const LayerTraffic layers = layer_traffic(spec, config, mesh.shape().data);
    if (tensor_grid_of(config.parallel).grid()) {
      out += fmt::format("tensor-parallel traffic per rank per step ({} grid: all-gathers, reduce-scatters, "
                         "all-reduces): {} = activations {} + weights {} + loss {} + summed gradients {}\n",
                         config.parallel.tensor.mode, human_bytes(layers.total()), human_bytes(layers.activations),
                         human_bytes(layers.weights), human_bytes(layers.loss), human_bytes(layers.gradients));
    } else {
      out += fmt::format("tensor / sequence-parallel traffic per rank per step ({}): {} = activations {} + loss {} + "
                         "summed gradients {} + sequence axis {}\n",
                         sequence_parallel(config) ? "split_gather: all-gathers + reduce-scatters" : "all-reduces",
                         human_bytes(layers.total()), human_bytes(layers.activations), human_bytes(layers.loss),
                         human_bytes(layers.gradients), human_bytes(layers.sequence));
    }
  }
  if (mesh.shape().tensor > 1 && config.parallel.sequence.mode == "none") {
    out += tensor_modes_section(spec, config, mesh.shape().data);
  }
  out += fmt::format("memory per rank (precision {}, tensor {}, ZeRO stage {} over {} data (x sequence) ranks; training "
                     "state as allocated, the rest estimated):\n",
                     config.precision.dtype, mesh.shape().tensor, config.zero.stage, data);
  out += row("parameters", memory.parameters);
  if (memory.master_weights) out += row("master weights (fp32)", memory.master_weights);
  out += row("gradients", memory.gradients);
  out += row("optimizer states (Adam)", memory.optimizer_states);
  out += row("activations", memory.activations);
  out += row("transient (backward peak)", memory.transients);
  if (memory.process) out += row("process (this binary)", memory.process);
  out += row("total (predicted peak)", memory.total());
  out += fmt::format("  training state per parameter: {:.2f} bytes\n",
                     static_cast<double>(memory.StateBytes::total()) / static_cast<double>(n));
  if (options.device_memory) out += device_fit_section(spec, config, data, *options.device_memory);
  if (config.zero.placement_policy || config.runtime.device_memory_limit) {
    std::optional<int64_t> budget = options.device_memory;
    if (config.runtime.device_memory_limit) {
      budget = parse_byte_size(*config.runtime.device_memory_limit, "runtime.device_memory_limit");
    }
    out += gemini_plan_section(rank_parameters(spec, config), data, config, memory.activations, budget);
  }
  if (options.verbose) {
    out += "\nresolved config:\n";
    out += dump_config(config);
  }
  return out;
}

}  // namespace cr
