// Gemini as a ParameterStrategy: ZeRO-3's semantics over the data ranks (each rank keeps its
// shard of every chunk; chunks are gathered around their use and reduce-scattered once all their
// gradients are in), with each chunk's weights and fp32 state placed on the device or the host by
// a policy (placement_policy.h), and the optimizer run where the state is (the fused CPU Adam on
// the host, tensor ops on a CUDA device). docs/gemini.md.
//
// auto: the first training step is the warm-up. It records which chunks each moment (a block's
// forward or backward) uses and the non-model memory (activations, temporaries: heap_meter.h) at
// each, with the device's room for model data fixed at (1 - warmup_non_model_data_ratio) of the
// budget. Then the ranks agree on the records (their maximum), the margin left takes chunks' fp32
// state to the device (gpu_margin_mem_ratio), and later steps keep gathered chunks on the device
// until room is needed, evicting the chunk used furthest ahead (Belady).
// Every decision uses sizes and records all ranks share, so ranks gather the same chunks.
//
// Prefetch (max_prefetch > 0, every policy): from the second training step on, the chunks the
// first step's trace names next are gathered ahead, without evicting: a host chunk's copy to the
// device runs on TierTransfers' worker (one data rank) and all-gathers run in the background, so
// they overlap the current block's compute.
//
// NVMe: chunks whose fp32 state is in the rank's file are updated in a pipeline of three host
// buffers: the next chunk's state is read while Adam updates this one, and the one before is
// written back meanwhile. Their gradient norm is taken at the step's last reduction, while the
// gradient is in memory anyway.
#pragma once

#include <memory>
#include <vector>

#include "core/config/config.h"
#include "kernels/adamw.h"
#include "memory/adamw_optimizer.h"
#include "memory/gemini/chunk_manager.h"
#include "memory/layer_backward_hook.h"
#include "memory/parameter_strategy.h"

namespace cr {

struct GeminiOptions {
  torch::Device device = torch::kCPU;
  std::string nvme_path;  // the NVMe tier's directory (placement.nvme_offload_fraction > 0)
  torch::ScalarType compute_dtype = torch::kFloat;
  int64_t device_budget = 0;  // bytes; 0: none (CPU: an unlimited emulated device)
  PlacementConfig placement;
  ChunkSearchOptions chunks;
  OptimizerConfig optimizer;
};

// The placement and chunk options of a config's zero section.
GeminiOptions gemini_options(const ZeroConfig& zero);

class GeminiStrategy final : public ParameterStrategy, public LayerBackwardListener {
 public:
  // As ZeroStrategy: the skeleton's parameters, weights from `source` (zeros: a checkpoint comes
  // next), `blocks` transformer blocks, `group` the data ranks, `model_parallel` the ranks holding
  // the model's other parts (the gradient norm is summed over them).
  GeminiStrategy(const ModuleParameters& params, const WeightSource* source, int64_t blocks,
                 const GeminiOptions& options, Communicator* group, Communicator* model_parallel = nullptr);

  int64_t numel() const override { return numel_; }
  void begin_step(bool training) override;
  void before_block(int64_t block) override;
  torch::Tensor after_block(int64_t block, const torch::Tensor& output) override;
  void begin_backward(bool reduces) override;
  void end_backward() override;
  void reduce_gradients() override;
  void end_step() override;
  double gradient_norm() override;
  void optimizer_step(double lr, double grad_scale) override;
  int64_t optimizer_steps() const override { return optimizer_steps_; }
  StateBytes state_bytes() const override;
  GradientTraffic gradient_traffic() const override;
  TierUsage tier_usage() const override;
  CheckpointPart checkpoint_part() override;
  void load_checkpoint(SliceReader& reader, int64_t optimizer_steps) override;
  torch::Tensor full_weights() override;
  uint32_t weights_crc32() override;
  torch::Tensor local_gradient(const std::string& name) override;
  void poison_gradients() override;

  void before_layer_backward(int64_t layer) override;

 private:
  void prepare(const std::vector<size_t>& needed);  // gathers, after making room
  enum class Demand { Gather, Gradients };  // what asks for room, for the error
  void make_room(int64_t demand, const std::vector<size_t>& needed, Demand kind);
  void make_staging_room(size_t chunk);  // before a chunk's gradient staging is allocated
  int64_t model_device_bytes() const;  // by the sizes every rank shares
  int64_t room_now() const;
  void move_block_tensors(int64_t block, TensorState from, TensorState to);  // the block's own tensors
  void on_gradient(size_t entry);
  void finish_reduction(size_t chunk);
  void settle(size_t chunk);  // after a reduction: every tensor back to HOLD
  void end_warmup();
  // auto records the warm-up's non-model memory; every policy records the chunk trace prefetch follows.
  bool measures_non_model() const { return options_.placement.policy == "auto"; }
  int64_t metered_tier_bytes() const;  // chunk buffers that memory_in_use() counts
  void release_all();
  void prefetch();
  std::vector<torch::Tensor> owned_state();  // fp32 weights, exp_avg, exp_avg_sq in owned space
  torch::Tensor fp32_weights(size_t chunk);  // this rank's shard of the chunk's weights, on the host
  double partial_sum_of_squares(size_t chunk, const torch::Tensor& grad) const;
  void update(size_t chunk, AdamStepParams p);  // Adam over one chunk whose state is in memory
  void update_nvme_chunks(const AdamStepParams& p);
  StateBuffer& nvme_buffer(size_t which);

  GeminiOptions options_;
  TierMemory memory_;
  ChunkLayout layout_;
  std::unique_ptr<NvmeStore> nvme_;
  std::vector<StateBuffer> nvme_buffers_;   // made on first use
  std::vector<double> nvme_partials_;       // sum of squares of NVMe chunks' gradients, last reduction
  bool last_backward_ = true, poisoned_ = false;
  std::unique_ptr<ChunkManager> chunks_;
  Communicator* group_;
  Communicator* model_parallel_;
  int64_t numel_ = 0;
  std::vector<std::vector<size_t>> block_chunks_;  // chunks each block uses
  std::vector<size_t> outer_chunks_;
  std::vector<std::vector<DecaySegment>> segments_;  // each chunk's decay runs, for the optimizer
  std::vector<int64_t> max_shard_;  // the largest rank's shard of each chunk: shared sizes
  bool training_ = false, warmup_ = false, warmed_up_ = false, stepping_ = false;
  size_t moment_ = 0;
  AccessTrace trace_;
  std::vector<int64_t> non_model_;    // per moment of the warm-up, then the ranks' maximum
  std::vector<int64_t> model_at_;     // model data on the device at each warm-up moment
  int64_t in_use_baseline_ = 0;
  std::vector<bool> reduced_;         // chunks reduced in this backward
  int64_t reduced_in_backward_ = 0;   // of the last backward, by the hooks
  int64_t optimizer_steps_ = 0;
  ChunkTraffic last_traffic_;         // of the last training step
};

}  // namespace cr
