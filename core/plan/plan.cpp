#include "core/plan/plan.h"

#include <fmt/format.h>

#include "core/train/mesh_layout.h"
#include "core/train/runtime.h"
#include "memory/zero_parameters.h"
#include "models/lm_loss.h"
#include "core/train/model_factory.h"
#include "core/base/strings.h"

namespace cr {

MemoryEstimate estimate_memory(const ModelSpec& spec, const Config& config, int data_parallel) {
  const auto entries = flat_layout(parameter_shapes(spec));
  const auto bucket_bytes = static_cast<int64_t>(config.parallel.bucket_mb * 1024 * 1024);
  // Rank 0 holds the largest shard.
  const ShardLayout layout(make_buckets(entries, bucket_bytes), 0, data_parallel);
  const torch::ScalarType dtype = compute_dtype(config.precision);
  MemoryEstimate m;
  static_cast<StateBytes&>(m) = ZeroParameters::predict(entries, layout, dtype, static_cast<int>(config.zero.stage),
                                                        config.zero.overlap_communication,
                                                        config.precision.master_weights);
  const int64_t compute_bytes = static_cast<int64_t>(c10::elementSize(dtype));
  // Tensors a block keeps for backward, in elements: LayerNorm inputs/outputs (4), q/k/v (3),
  // attention output (1), residual (1), MLP input/hidden/activation (1 + 4 + 4 with d_ff = 4d),
  // plus the attention probabilities and scores (2 per head and position pair).
  const double b = static_cast<double>(config.train.micro_batch_size);
  const double s = static_cast<double>(config.data.seq_len);
  const double d = static_cast<double>(spec.d_model);
  const double ff = static_cast<double>(spec.d_ff);
  const double per_layer = b * s * (10.0 * d + 2.0 * ff) + 2.0 * b * spec.n_head * s * s;
  // The fused LM head keeps the hidden-state gradient (and the weight gradient, below).
  const double head = 3.0 * b * s * d;
  m.activations = static_cast<int64_t>((per_layer * spec.n_layer + head) * compute_bytes);
  // The output embedding's gradient, vocab x d, is the largest short-lived tensor. The fused
  // head forms it in fp32 during forward; its backward scales it into a new fp32 tensor (and
  // casts that to the compute dtype). With tied embeddings autograd holds that gradient until
  // the input embedding's own (dense) one arrives at the end of backward, and adds the two.
  const int64_t embedding = spec.vocab_size * embedding_dim(spec);
  // The head works through the logits a chunk of rows at a time: the chunk's logits (compute
  // dtype), fp32 log-probabilities and, below fp32, their gradient cast back.
  const int64_t rows = config.train.micro_batch_size * config.data.seq_len;
  const int64_t chunk = loss_chunk_rows(rows, spec.vocab_size, !resolve_device(config.runtime).is_cpu()) *
                        spec.vocab_size * (compute_bytes + 4 + (dtype == torch::kFloat ? 0 : compute_bytes));
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

std::string plan_report(const Config& config, int world_size) {
  const ModelSpec spec = model_spec_from_config(config.model);
  const ProcessMesh mesh = mesh_for(config.parallel, spec, world_size);
  const int64_t n = parameter_count(spec);
  const int64_t global_batch =
      config.train.global_batch_size > 0 ? config.train.global_batch_size : config.train.micro_batch_size;
  const int64_t tokens_per_step = global_batch * config.data.seq_len;
  const double flops = flops_per_token(spec, config.data.seq_len);
  const auto memory = estimate_memory(spec, config, mesh.shape().data);
  auto row = [](const char* what, int64_t bytes) {
    return fmt::format("  {:<24}{:>14}  ({} bytes)\n", what, human_bytes(static_cast<double>(bytes)), with_thousands(bytes));
  };
  std::string out;
  out += fmt::format("config: {}\n", config.source);
  out += fmt::format("model: {} ({}) | {} layers, {} heads, d_model {}, d_ff {}, vocab {}, max_seq_len {}\n",
                     spec.arch, config.model.preset.value_or("explicit dimensions"), spec.n_layer, spec.n_head,
                     spec.d_model, spec.d_ff, spec.vocab_size, spec.max_seq_len);
  out += fmt::format("parameters: {}\n", with_thousands(n));
  out += fmt::format("FLOPs per token (forward + backward, seq_len {}): {:.4g}\n", config.data.seq_len, flops);
  out += fmt::format("batch: global {} sequences = {} micro-batches of {} | {} tokens per step\n", global_batch,
                     global_batch / config.train.micro_batch_size, config.train.micro_batch_size,
                     with_thousands(tokens_per_step));
  out += fmt::format("FLOPs per step: {:.4g} | for {} steps: {:.4g}\n", flops * tokens_per_step, config.train.steps,
                     flops * tokens_per_step * config.train.steps);
  out += mesh.describe();
  if (out.back() != '\n') out += '\n';
  const int data = mesh.shape().data;
  if (data > 1) {
    // Ring collectives: each rank sends (N-1)/N of the buffer per reduce-scatter or all-gather.
    const double pass = static_cast<double>(data - 1) / data * static_cast<double>(n);
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
  out += fmt::format("memory per rank (precision {}, ZeRO stage {} over {} data-parallel ranks; training state as "
                     "allocated, the rest estimated):\n",
                     config.precision.dtype, config.zero.stage, data);
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
  out += "\nresolved config:\n";
  out += dump_config(config);
  return out;
}

}  // namespace cr
