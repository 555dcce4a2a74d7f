// ZeRO stage 3's parameter lifecycle. Each rank stores only its shard of the compute weights;
// a transformer layer's weights are all-gathered just before the layer runs and released right
// after, in forward and again in backward, while the next layer's gather is already in flight
// (forward: layer i + 1, backward: layer i - 1). The embeddings, final norm and head (the
// "outer" parameters, used at both ends of the model) stay gathered from the start of a step
// to the end of its backward. At most the outer parameters and two layers are whole at once.
// Layers are gathered into buffers kept for reuse (one per layer in flight), not allocated per
// layer: a fresh buffer of a few tens of MiB per layer would come from the heap and fragment it,
// growing the resident set by up to the whole model over a forward pass.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "memory/layer_backward_hook.h"
#include "memory/zero_parameters.h"
#include "parallel/communicator.h"

namespace cr {

class ParameterGatherer final : public LayerBackwardListener {
 public:
  ParameterGatherer(ZeroParameters& params, int64_t layers, bool prefetch);
  ParameterGatherer(const ParameterGatherer&) = delete;
  ParameterGatherer& operator=(const ParameterGatherer&) = delete;

  void gather_outer();   // before the first forward of a step (or of an evaluation)
  void release_all();    // after the step's last backward (or the evaluation)
  // Around layer `layer`'s forward: gathers it (prefetching the next), and afterwards
  // releases it, returning the layer's output with the hook that re-gathers it for backward.
  void before_layer(int64_t layer);
  torch::Tensor after_layer(int64_t layer, const torch::Tensor& output);

  int64_t peak_gathered_bytes() const { return peak_bytes_; }

  // Backward reached layer `layer` (its output's gradient is ready): gather it, prefetch below.
  void before_layer_backward(int64_t layer) override;

 private:
  // A contiguous run of the group's parameters, gathered into one buffer bucket by bucket.
  struct Range {
    int64_t begin = 0, end = 0;
    std::vector<size_t> buckets;
    torch::Tensor gathered;
  };
  struct Group {
    std::vector<Range> ranges;
    std::vector<std::pair<size_t, size_t>> entries;  // (entry, range)
    std::vector<std::unique_ptr<CommWork>> in_flight;
    bool requested = false;  // gather started (or done)
    bool ready = false;      // parameters point at the gathered weights
    int pending_grads = 0;
    torch::Tensor buffer;    // while requested: a layer buffer from free_buffers_ (layers only)
  };
  Group& group(int64_t layer) { return layer < 0 ? outer_ : layers_[layer]; }
  void start(Group& g);
  void finish(Group& g);
  void release(Group& g);
  void on_gradient(int64_t layer);

  ZeroParameters& params_;
  bool prefetch_;
  Group outer_;
  std::vector<Group> layers_;
  torch::Tensor empty_;
  int64_t layer_numel_ = 0;                 // the largest layer's elements: one buffer's size
  std::vector<torch::Tensor> free_buffers_;  // layer buffers not in use
  int64_t bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace cr
