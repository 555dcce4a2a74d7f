// One data-parallel rank's training buffers under a ZeRO stage (Rajbhandari et al.), all flat and
// laid out by a ShardLayout, for N ranks and a compute dtype of fp32, bf16 or fp16:
//
//   stage  compute weights   fp32 master weights            fp32 gradients
//   0      whole             whole (the compute ones, fp32)  whole
//   1      whole             own shard                       whole (own slices reduced)
//   2      whole             own shard                       own shard
//   3      own shard         own shard (the compute, fp32)   own shard
//
// Without master weights (bf16 / fp16), the optimizer updates the compute weights themselves.
// Adam's moments (AdamWOptimizer) follow the weights the optimizer updates. At stage 3 the
// module's parameters are empty between uses; ParameterGatherer fills them layer by layer.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "memory/flat_parameters.h"
#include "memory/shard_layout.h"
#include "memory/state_bytes.h"

namespace cr {

class Communicator;
class WeightSource;

class ZeroParameters {
 public:
  // What a rank at `reduced`'s position holds in training with this layout, computed without
  // allocating anything (`plan`): the buffers below, GradientSynchronizer's staging (at most two
  // consecutive buckets: an upper bound, reached with overlap) and, at stage 3 with several
  // ranks, ParameterGatherer's gathered weights (the outer parameters and two layers, or one
  // without overlap).
  static StateBytes predict(const std::vector<FlatEntry>& entries, const ShardLayout& reduced,
                            torch::ScalarType compute_dtype, int stage, bool overlap, bool master_weights);

  // Owns the weights of `params` (a skeleton's parameters, given storage here), taking from
  // `source` only the part this rank holds (zeros without a source: loaded next). `reduced`: the
  // data-parallel layout gradients are reduce-scattered with (rank, size); `group`: that group
  // (null when size 1). master_weights false (bf16 / fp16 only): no fp32 copy; the optimizer
  // updates the compute weights in place, rounding every step (Colossal-AI's master_weights=False).
  ZeroParameters(const ModuleParameters& params, const WeightSource* source, torch::Device device,
                 torch::ScalarType compute_dtype, int stage, ShardLayout reduced, Communicator* group,
                 bool master_weights = true);
  ZeroParameters(const ZeroParameters&) = delete;
  ZeroParameters& operator=(const ZeroParameters&) = delete;

  int stage() const { return stage_; }
  torch::ScalarType compute_dtype() const { return compute_dtype_; }
  bool low_precision() const { return compute_dtype_ != torch::kFloat; }
  int64_t numel() const { return reduced_.total_numel(); }
  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<torch::Tensor>& parameters() const { return params_; }  // in entry order
  const ShardLayout& reduced() const { return reduced_; }  // what each rank's reduction yields
  const ShardLayout& owned() const { return owned_; }      // what this rank updates
  Communicator* group() const { return group_; }

  // The weights the optimizer updates for owned slice `bucket`: fp32 master weights, or the
  // compute weights themselves without master weights.
  torch::Tensor weights(size_t bucket);
  // The fp32 gradient of owned slice `bucket`, reduced over the ranks once synchronised.
  torch::Tensor gradient(size_t bucket);
  // Where the compute copy of owned slice `bucket` lives; undefined when weights() is it.
  torch::Tensor compute_copy(size_t bucket);
  torch::Tensor& gradient_sums() { return grad_full_; }   // stages 0-1: flat fp32
  torch::Tensor& gradient_shard() { return grad_shard_; } // stages 2-3: shard space fp32
  torch::Tensor& compute_shard() { return compute_shard_; }  // stage 3

  void zero_grad();
  // Sum of squares of the reduced gradients over all ranks of the group, added in an order that
  // does not depend on the stage, so that clipping is bitwise the same at every stage. Parameters
  // that are not primary (copies another tensor rank counts) are left out.
  double gradient_sum_of_squares();
  // After the optimizer wrote the owned slices: every rank's compute weights become current.
  void publish();
  torch::Device compute_device() const { return (compute_full_.defined() ? compute_full_ : compute_shard_).device(); }
  // The whole fp32 weights, on every rank.
  torch::Tensor full_master();
  // The fp32 weights this rank updates, in owned space (whole at stage 0, the shard from stage 1).
  torch::Tensor owned_weights() const;
  // Replaces the weights from owned-space fp32 values (each rank its own part); collective.
  void load_owned_weights(const torch::Tensor& owned);

  // Bytes this rank holds persistently, by kind (predict() adds the transient buffers).
  int64_t compute_bytes() const;
  int64_t gradient_bytes() const;
  int64_t master_bytes() const;

  // Every parameter's gradient accumulator, in entry order, for gradient hooks.
  const std::vector<std::shared_ptr<torch::autograd::Node>>& grad_accumulators() const { return accumulators_; }

 private:
  int stage_;
  torch::ScalarType compute_dtype_;
  bool keeps_master_;  // an fp32 master copy exists (or the compute weights are fp32)
  ShardLayout reduced_, owned_;
  Communicator* group_;
  std::vector<FlatEntry> entries_;
  bool all_primary_;  // no entry is a copy another tensor rank counts
  std::vector<torch::Tensor> params_;
  torch::Tensor master_, grad_full_, grad_shard_, compute_full_, compute_shard_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;

  void gather_compute();  // stages 1-2: every rank's owned slices of the compute weights, to all
};

}  // namespace cr
