#include "core/plan/grid_traffic.h"

#include "core/base/error.h"
#include "core/train/runtime.h"
#include "parallel/communicator.h"
#include "core/train/mesh_layout.h"
#include "core/train/model_factory.h"
#include "models/causal_lm.h"
#include "models/mixed_precision.h"
#include "models/norm.h"
#include "models/tensor_parallel.h"

namespace cr {

GridTraffic grid_traffic_per_micro_batch(const ModelSpec& spec, const Config& config) {
  const TensorGridShape shape = tensor_grid_of(config.parallel);
  CR_CHECK(shape.grid(), "grid traffic of a 1d layout");
  const auto skeleton =
      build_model_skeleton(spec, tensor_parallel_layout(0, shape.size(), spec, false, 1, false, shape));
  const double q = shape.q, parts = shape.batch_parts();
  const double share = (q - 1) / q;                    // of a gathered or scattered tensor, along a row or column
  const double copies = 2.0 * (parts - 1) / parts;  // of an all-reduced buffer, over the batch parts
  const double layers = 2.0 * (shape.depth - 1.0) / shape.depth;
  const torch::ScalarType dtype = compute_dtype(config.precision);
  const double activation =
      static_cast<double>(c10::elementSize(activation_dtype(dtype, resolve_device(config.runtime))));
  const double gradient = static_cast<double>(c10::elementSize(dtype));
  const double tokens =
      static_cast<double>(config.train.micro_batch_size) * static_cast<double>(config.data.seq_len) / parts;
  const double d = static_cast<double>(spec.d_model);
  const bool cube = shape.mode == TensorMode::ThreeD, stacked = shape.mode == TensorMode::TwoAndHalfD;

  GridTraffic traffic;
  // A gathered input of width w: all-gathered in forward, its gradient reduce-scattered: n x w each.
  auto entered = [&](double width) { traffic.activations += 2.0 * share * tokens * width * activation; };
  // Attention and the MLP each gather their input once for the opening layers that read it.
  for (int64_t block = 0; block < spec.n_layer; ++block) {
    entered(d);
    entered(d);
  }
  const auto slices = parameter_slices(*skeleton);
  for (const auto& item : skeleton->named_modules()) {
    const auto* closing = dynamic_cast<const RowParallelLinearImpl*>(item.value().get());
    const auto* linear = dynamic_cast<const TensorParallelLinear*>(item.value().get());
    if (const auto* norm = dynamic_cast<const NormImpl*>(item.value().get())) {
      // LayerNorm sums x and (x - mean)^2, RMSNorm x^2: n fp32 values each, forward and backward.
      const double sums = norm->bias.defined() ? 2.0 : 1.0;
      traffic.activations += 2.0 * sums * 2.0 * share * tokens * 4.0;
    }
    if (!linear) continue;
    const double numel = static_cast<double>(element_count(slices.at(item.key() + ".weight").global_shape));
    const double out = static_cast<double>(slices.at(item.key() + ".weight").global_shape[0]);
    if (closing) entered(static_cast<double>(slices.at(item.key() + ".weight").global_shape[1]));
    // The block (numel / q; 3d: numel / q^2) gathered from its strips in forward and again in
    // backward, its gradient reduce-scattered.
    traffic.weights += 3.0 * share * numel / (cube ? q * q : q) * activation;
    // 3d: the partial output reduce-scattered over the batch, its gradient all-gathered back.
    if (cube) traffic.activations += 2.0 * share * tokens * out * activation;
    if (stacked) traffic.gradients += layers * numel / (q * q) * gradient;
  }
  // Every other parameter but the token tables (rows split over the batch parts: the 2-D
  // slices cut along rows) is a hidden part copied over the batch parts (3d's opening biases over
  // as many), its gradient all-reduced over them once per backward.
  for (const auto& item : skeleton->named_parameters()) {
    const auto& slice = slices.at(item.key());
    if (slice.global_shape.size() == 2 && slice.dim == 0) continue;
    traffic.gradients += copies * static_cast<double>(element_count(slice.local_shape())) * gradient;
  }
  // The token embedding: every token's lookup reduce-scattered over the batch group, its
  // gradient all-gathered back.
  const double all_tokens = tokens * parts, column = d / q, scatter = (parts - 1) / parts;
  traffic.activations += 2.0 * scatter * all_tokens * column * activation;
  // The loss: the hidden columns all-gathered over the batch group and their fp32 gradients
  // reduce-scattered back; each chunk's partial logits against the rank's vocabulary rows
  // reduce-scattered along the row and their gradients all-gathered (fp32); the softmax max and
  // (sum, target logit) of the rank's 1/q of the tokens all-reduced over the batch group; the
  // shares summed along the row.
  const double rows = static_cast<double>(shard_range(spec.vocab_size, 0, shape.batch_parts()).second);
  traffic.loss = scatter * all_tokens * column * (activation + 4.0) + 2.0 * share * all_tokens * rows * 4.0 +
                 copies * 3.0 * all_tokens / q * 4.0 + 2.0 * share * 4.0;
  return traffic;
}

}  // namespace cr
