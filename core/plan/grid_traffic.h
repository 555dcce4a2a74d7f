// What a rank of a 2d / 2.5d / 3d tensor grid sends per micro-batch, from the layers the model
// builds on the grid (models/grid_parallel.h says what each one communicates). Ring model, as
// bytes_sent_by_process() counts: an all-reduce 2 (n-1)/n of its buffer, an all-gather or
// reduce-scatter (n-1)/n of the whole tensor.
#pragma once

#include "core/config/config.h"
#include "models/model_spec.h"

namespace cr {

struct GridTraffic {
  // Linear layers' inputs gathered and their gradients scattered back (3d: outputs too), norms'
  // sums, the token embedding's lookups scattered to their batch parts.
  double activations = 0;
  double weights = 0;      // weight strips (pieces) gathered in forward and backward, their gradients reduce-scattered
  double gradients = 0;    // copies' gradients summed: hidden-part parameters over their batch parts, 2.5d's layers
  double loss = 0;         // the LM head: hidden columns gathered, partial logits, softmax sums, gradients
  double total() const { return activations + weights + gradients + loss; }
};

// One micro-batch of `config` (train.micro_batch_size sequences of data.seq_len) on tensor rank 0
// of the grid parallel.tensor describes (which must be 2d, 2.5d or 3d).
GridTraffic grid_traffic_per_micro_batch(const ModelSpec& spec, const Config& config);

}  // namespace cr
