#include "memory/owned_state.h"

namespace cr {
namespace {

constexpr const char* kStateNames[] = {"", "exp_avg.", "exp_avg_sq."};  // weights, Adam's moments

}  // namespace

CheckpointPart owned_state_part(const std::vector<FlatEntry>& entries, const ShardLayout& reduced,
                                const ShardLayout& owned, std::vector<torch::Tensor> state) {
  CheckpointPart part;
  for (const auto& tensor : state) part.storage.push_back(tensor.to(torch::kCPU, torch::kFloat).contiguous());
  for (size_t k = 0; k < part.storage.size(); ++k) {
    for (const auto& share : reduced.slices()) {
      const float* base = part.storage[k].data_ptr<float>() + (owned.sharded() ? share.shard_begin : share.flat_begin);
      for_each_overlap(entries, share.flat_begin, share.numel,
                       [&](const FlatEntry& entry, int64_t begin, int64_t end) {
                         if (!entry.slice.primary) return;
                         for_each_global_run(entry.slice, begin - entry.offset, end - begin,
                                             [&](int64_t global, int64_t local, int64_t n) {
                                               append_run(part.slices, kStateNames[k] + entry.name,
                                                          entry.global_shape(), global, n,
                                                          base + (entry.offset + local - share.flat_begin));
                                             });
                       });
    }
  }
  return part;
}

std::vector<torch::Tensor> read_owned_state(SliceReader& reader, const std::vector<FlatEntry>& entries,
                                            const ShardLayout& owned) {
  for (const auto& entry : entries) {
    for (const char* kind : kStateNames) reader.check_shape(kind + entry.name, entry.global_shape());
  }
  std::vector<torch::Tensor> state;
  for (size_t k = 0; k < 3; ++k) state.push_back(torch::empty({owned.shard_numel()}, torch::kFloat));
  for (const auto& slice : owned.slices()) {
    for_each_overlap(entries, slice.flat_begin, slice.numel,
                     [&](const FlatEntry& entry, int64_t begin, int64_t end) {
                       for (size_t k = 0; k < state.size(); ++k) {
                         float* base = state[k].data_ptr<float>() + slice.shard_begin - slice.flat_begin;
                         for_each_global_run(entry.slice, begin - entry.offset, end - begin,
                                             [&](int64_t global, int64_t local, int64_t n) {
                                               reader.read(kStateNames[k] + entry.name, global, n,
                                                           base + entry.offset + local);
                                             });
                       }
                     });
  }
  return state;
}

}  // namespace cr
