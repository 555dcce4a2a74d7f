#include "core/plan.h"

#include <fmt/format.h>

#include "core/mesh_layout.h"
#include "core/model_factory.h"
#include "core/strings.h"

namespace cr {

MemoryEstimate estimate_memory(const ModelSpec& spec, const Config& config, int data_parallel) {
  const int64_t n = parameter_count(spec);
  const bool low_precision = config.precision.dtype != "fp32";
  const int64_t compute_bytes = low_precision ? 2 : 4;
  MemoryEstimate m;
  m.parameters = n * compute_bytes;
  m.master_weights = low_precision ? n * 4 : 0;
  m.gradients = n * 4 + (low_precision ? n * compute_bytes : 0);
  // Adam's two fp32 moments; ZeRO-1 keeps 1/N of them per rank (the largest shard).
  const int64_t sharing = config.zero.stage >= 1 ? data_parallel : 1;
  m.optimizer_states = (n + sharing - 1) / sharing * 8;
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
    const int64_t gradient_bytes = n * 4;
    out += fmt::format("data-parallel gradient all-reduce per step: {} per rank (ring: 2(N-1)/N x {} of fp32 "
                       "gradients)\n",
                       human_bytes(2.0 * (data - 1) / data * static_cast<double>(gradient_bytes)),
                       human_bytes(static_cast<double>(gradient_bytes)));
  }
  out += fmt::format("memory per rank (precision {}, estimate):\n", config.precision.dtype);
  out += row("parameters", memory.parameters);
  if (memory.master_weights) out += row("master weights (fp32)", memory.master_weights);
  out += row("gradients", memory.gradients);
  out += row("optimizer states (Adam)", memory.optimizer_states);
  out += row("activations", memory.activations);
  out += row("total", memory.total());
  out += "\nresolved config:\n";
  out += dump_config(config);
  return out;
}

}  // namespace cr
