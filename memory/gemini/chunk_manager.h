// The chunks of one rank: their storage on each tier, the tensor states, and the moves Gemini
// makes with them. Each chunk holds, for this rank's shard of its flat range (ShardLayout over
// the chunks, split over the data ranks):
//   weights    the compute weights (compute dtype; with fp32 compute they are the master weights)
//   master     fp32 master weights when computing in 16 bits
//   grad, exp_avg, exp_avg_sq   fp32, where the fp32 state is placed
// and, while the chunk is gathered, `full`: the whole chunk on the device, of which every one of
// its parameters is a view. Gathering fills `full` (an all-gather over the data ranks, or a copy
// to the device; with one rank and weights on the device, `full` is the weights themselves) and
// points the parameters at it, so model code never sees a move; releasing empties them again.
// Gradients go to `staging` (fp32, the whole chunk, on the device) and are reduce-scattered into
// `grad` once every tensor of the chunk is READY_FOR_REDUCE, as ZeRO-3 does with its buckets (on
// the host tier, by the transfer worker, while backward goes on).
// A chunk whose fp32 state is on the NVMe tier keeps master weights, gradients and moments in
// regions of the rank's file; they are in memory (host buffers the caller lends) only between
// load_state() and unload(). Its gradient is read, added to and written back at each reduction
// (only written when the step's first), and its moments start as zeros without being read.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "memory/flat_parameters.h"
#include "memory/gemini/chunk_layout.h"
#include "memory/gemini/nvme_store.h"
#include "memory/gemini/placement_policy.h"
#include "memory/gemini/tensor_state.h"
#include "memory/gemini/tier_memory.h"
#include "memory/gemini/tier_transfers.h"
#include "parallel/communicator.h"

namespace cr {

class WeightSource;

struct Chunk {
  Chunk(size_t index, BucketRange range, ShardSlice slice, std::vector<size_t> entries, ChunkPlacement placement)
      : range(range), slice(slice), entries(std::move(entries)), states(index, this->entries.size(), TensorState::Free),
        placement(placement), pending_grads(static_cast<int>(this->entries.size())) {}

  BucketRange range;   // in the flat layout
  ShardSlice slice;    // this rank's part
  std::vector<size_t> entries;  // its parameters, in flat order
  ChunkTensorStates states;
  ChunkPlacement placement;
  torch::Tensor weights, master, grad, exp_avg, exp_avg_sq;
  torch::Tensor full, staging;
  std::vector<std::unique_ptr<CommWork>> in_flight;  // a gather started ahead of use
  TierTransfers::Ticket copying = 0;   // host weights on their way into `full`, started ahead of use
  TierTransfers::Ticket draining = 0;  // the reduced gradient on its way into host `grad`
  bool bound = false;  // the parameters point into `full`
  int pending_grads = 0;
  // NVMe tier: the regions of master weights (16-bit compute), gradients, exp_avg, exp_avg_sq.
  std::vector<size_t> regions;
  bool grad_zero = true, moments_zero = true;  // nothing written yet this step / ever
};

// Host buffers for one NVMe chunk's state while it is in memory (4 KiB-aligned, whole blocks).
struct StateBuffer {
  torch::Tensor parts[4];  // master, grad, exp_avg, exp_avg_sq
};

// Bytes moved between tiers since the last reset (collectives count their own: bytes_sent_by_process),
// and the time the device / host copies took.
struct ChunkTraffic {
  int64_t host_to_device = 0, device_to_host = 0, nvme_read = 0, nvme_written = 0;
  int64_t prefetched = 0;  // chunks whose gathering started ahead of use
  TransferTimes copies;
};

class ChunkManager {
 public:
  // Takes the parameters of `params` (a skeleton's), giving each chunk its storage as
  // `placement` says and filling it from `source` (zeros without one). group: the data ranks
  // (null: one); nvme: the NVMe tier's file, needed when a chunk's state is placed there.
  ChunkManager(const ModuleParameters& params, const WeightSource* source, TierMemory& memory,
               const ChunkLayout& layout, const std::vector<ChunkPlacement>& placement,
               torch::ScalarType compute_dtype, Communicator* group, NvmeStore* nvme = nullptr);
  ChunkManager(const ChunkManager&) = delete;
  ChunkManager& operator=(const ChunkManager&) = delete;

  size_t size() const { return chunks_.size(); }
  Chunk& chunk(size_t c) { return chunks_[c]; }
  const Chunk& chunk(size_t c) const { return chunks_[c]; }
  const std::vector<FlatEntry>& entries() const { return entries_; }
  const ShardLayout& layout() const { return layout_; }
  Communicator* group() const { return group_; }
  torch::ScalarType compute_dtype() const { return compute_dtype_; }
  // (chunk, position in the chunk) of each entry.
  std::pair<size_t, size_t> locate(size_t entry) const { return location_[entry]; }
  const std::vector<std::shared_ptr<torch::autograd::Node>>& grad_accumulators() const { return accumulators_; }
  torch::Tensor& parameter(size_t entry) { return params_[entry]; }

  int64_t full_bytes(size_t c) const;  // the whole chunk in the compute dtype
  // Device bytes gathering chunk c would take now (0 when gathered, or when its weights serve).
  int64_t gather_bytes(size_t c) const;
  bool gathered(size_t c) const { return chunks_[c].full.defined(); }
  // Prefetch: the host weights' copy and the all-gather (several ranks) in flight, or the copy done.
  void start_gather(size_t c);
  void gather(size_t c);        // whole and bound: its tensors FREE -> HOLD
  void release(size_t c);       // its tensors HOLD -> FREE, `full` dropped
  // Releasable: gathered, not kept gathered, every tensor HOLD and no gradient being staged.
  bool idle(size_t c) const;

  // Adds `grad` (the entry's gradient) into its chunk's staging, allocating it on first use.
  void stage_gradient(size_t entry, const torch::Tensor& grad);
  int64_t staging_bytes(size_t c) const { return chunks_[c].range.numel() * 4; }
  // Reduce-scatters (averages) the staged gradients and adds this rank's part into `grad`;
  // chunks nothing was staged for contribute zeros. Returns the chunk's gradient shard after the
  // addition (for an NVMe chunk, the host copy on its way to the file). A host chunk's part is
  // copied and added on the transfer worker: its `grad` is complete after settle_drains().
  torch::Tensor reduce(size_t c);
  // Device bytes of staging that drains started by reduce() may still hold: counted, whatever the
  // worker's progress, until settle_drains(), so that every rank sees the same number.
  int64_t draining_bytes() const;
  void settle_drains();
  void flush();  // gradient writes to the NVMe tier done

  bool on_nvme(size_t c) const { return chunks_[c].placement.state == Tier::Nvme; }
  StateBuffer state_buffer(int64_t shard_numel);
  // Starts reading an NVMe chunk's state into `buffer` (the gradient too when `with_grad`), whose
  // views the chunk's master / grad / exp_avg / exp_avg_sq become; wait for the tickets.
  std::vector<NvmeStore::Ticket> load_state(size_t c, StateBuffer& buffer, bool with_grad);
  void view_state(size_t c, StateBuffer& buffer);  // the views alone: the caller fills them
  // Starts writing back what an update changed (master weights, moments).
  std::vector<NvmeStore::Ticket> store_state(size_t c);
  void unload(size_t c);  // its state views dropped
  NvmeStore* nvme() const { return nvme_; }

  void move_weights(size_t c, Tier to);
  void move_state(size_t c, Tier to);
  void zero_grad();

  ChunkTraffic& traffic() { return traffic_; }
  ChunkTraffic traffic_with_times() const;
  void reset_traffic();
  TierTransfers& transfers() { return transfers_; }
  int64_t peak_gathered_bytes() const { return peak_gathered_; }
  int64_t peak_staging_bytes() const { return peak_staging_; }

 private:
  void begin_gather(size_t c, bool ahead);
  void land(Chunk& chunk);  // its copy and all-gather done
  torch::Tensor& staging(size_t c);  // the chunk's gradient staging, allocated (zeros) on first use
  void bind(Chunk& chunk);
  void unbind(Chunk& chunk);
  torch::Tensor moved(const torch::Tensor& tensor, Tier to, const std::string& what);

  TierMemory& memory_;
  NvmeStore* nvme_;
  std::vector<std::pair<NvmeStore::Ticket, torch::Tensor>> gradient_writes_;  // in flight, with their buffers
  std::vector<FlatEntry> entries_;
  std::vector<torch::Tensor> params_;
  ShardLayout layout_;
  Communicator* group_;
  torch::ScalarType compute_dtype_;
  std::vector<Chunk> chunks_;
  std::vector<std::pair<size_t, size_t>> location_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  torch::Tensor empty_;
  ChunkTraffic traffic_;
  TierTransfers transfers_;
  int64_t gathered_bytes_ = 0, peak_gathered_ = 0, staging_now_ = 0, peak_staging_ = 0;
};

}  // namespace cr
