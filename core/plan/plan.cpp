#include "core/plan/plan.h"

#include <fmt/format.h>

#include "core/train/mesh_layout.h"
#include "core/train/runtime.h"
#include "memory/zero_parameters.h"
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
  // The fused LM head keeps the hidden-state gradient and the output-embedding gradient.
  const double head = 3.0 * b * s * d + static_cast<double>(spec.vocab_size) * d;
  m.activations = static_cast<int64_t>((per_layer * spec.n_layer + head) * compute_bytes);
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
                     "allocated, activations estimated):\n",
                     config.precision.dtype, config.zero.stage, data);
  out += row("parameters", memory.parameters);
  if (memory.master_weights) out += row("master weights (fp32)", memory.master_weights);
  out += row("gradients", memory.gradients);
  out += row("optimizer states (Adam)", memory.optimizer_states);
  out += row("activations", memory.activations);
  out += row("total", memory.total());
  out += fmt::format("  training state per parameter: {:.2f} bytes\n",
                     static_cast<double>(memory.StateBytes::total()) / static_cast<double>(n));
  out += "\nresolved config:\n";
  out += dump_config(config);
  return out;
}

}  // namespace cr
