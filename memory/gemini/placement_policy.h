// Gemini's placement decisions as plain data, apart from the chunks they move:
//  - static: which chunks keep their compute weights gathered, and which keep weights or fp32
//    state (master weights, gradients, Adam moments) on the host, from Colossal-AI's three
//    fractions taken over the chunks in order; `cuda` and `cpu` are its presets;
//  - auto: the access trace of the warm-up step, Belady's eviction order over it (the chunk whose
//    next use lies furthest ahead leaves first), the device room left for model data at each
//    moment, and which chunks take their fp32 state back to the device after warm-up.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "memory/gemini/tier_memory.h"

namespace cr {

struct ChunkPlacement {
  Tier weights = Tier::Device;  // the rank's shard of the compute weights
  Tier state = Tier::Device;    // fp32 master weights (16-bit compute), gradients and Adam moments: any tier
  bool keep_gathered = false;   // the whole chunk stays on the device between uses
};

struct PlacementConfig {
  std::string policy = "cuda";  // static | cuda | cpu | auto
  double shard_param_frac = 1.0, offload_optim_frac = 0.0, offload_param_frac = 0.0;
  double gpu_margin_mem_ratio = 0.0, warmup_non_model_data_ratio = 0.8, steady_cuda_cap_ratio = 0.9;
  int64_t max_prefetch = 0;
  double nvme_offload_fraction = 0.0;  // of the chunks whose state is on the host, by bytes
};

// Each chunk's starting placement. `chunk_bytes`: each chunk's size (any unit); a fraction f of
// a kind takes the first chunks in order until their bytes reach f of the total. The NVMe tier
// takes, likewise, the first chunks whose state would be on the host until nvme_offload_fraction
// of their bytes (the flat layout ends with the token embedding, which a fraction below 1 keeps
// on the host: the NVMe tier's buffers are sized by its largest chunk).
std::vector<ChunkPlacement> initial_placement(const PlacementConfig& config, const std::vector<int64_t>& chunk_bytes);

// The chunks each moment of a step needed (a block's forward or backward), recorded in warm-up.
class AccessTrace {
 public:
  void record(std::vector<size_t> chunks) { moments_.push_back(std::move(chunks)); }
  size_t size() const { return moments_.size(); }
  const std::vector<size_t>& at(size_t moment) const { return moments_[moment]; }
  // The first moment after `now` that uses `chunk`; npos when none does.
  size_t next_use(size_t chunk, size_t now) const;
  static constexpr size_t npos = std::numeric_limits<size_t>::max();

 private:
  std::vector<std::vector<size_t>> moments_;
};

// `candidates` in the order to evict them at moment `now`: chunks not used again first, then
// by next use, furthest first (Belady); ties keep the candidates' order.
std::vector<size_t> eviction_order(const std::vector<size_t>& candidates, const AccessTrace& trace, size_t now);

// Bytes of device memory model data may use at a moment: the device's share (warm-up keeps
// warmup_non_model_data_ratio of it for activations; later steady_cuda_cap_ratio of it is usable)
// less the non-model bytes forecast for it (steady: the most recorded at this moment and the next).
int64_t model_data_room(const PlacementConfig& config, int64_t capacity, bool warmup, int64_t non_model_forecast);

// After warm-up: the chunks, in order, whose weights and fp32 state move to the device, taking
// gpu_margin_mem_ratio of `margin` (capacity x steady_cuda_cap_ratio less the warm-up's peak of model
// and non-model data). `moved_bytes`: what each chunk would add to the device.
std::vector<size_t> margin_chunks(const PlacementConfig& config, int64_t margin, const std::vector<int64_t>& moved_bytes);

}  // namespace cr
