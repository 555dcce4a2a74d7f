#include "memory/weight_source.h"

#include <algorithm>

#include "core/base/error.h"

namespace cr {

void fill_flat_range(const WeightSource& source, const std::vector<FlatEntry>& entries, int64_t flat_begin,
                     torch::Tensor out) {
  CR_CHECK(out.dim() == 1 && out.is_contiguous(), "fill_flat_range: a contiguous vector");
  torch::NoGradGuard no_grad;
  const auto fill = [&](int64_t begin, int64_t numel, float* data) {
    for_each_overlap(entries, begin, numel, [&](const FlatEntry& entry, int64_t from, int64_t to) {
      for_each_global_run(entry.slice, from - entry.offset, to - from, [&](int64_t global, int64_t local, int64_t n) {
        source.read(entry, global, n, data + (entry.offset + local - begin));
      });
    });
  };
  if (out.is_cpu() && out.scalar_type() == torch::kFloat) {
    fill(flat_begin, out.numel(), out.data_ptr<float>());
    return;
  }
  // Converted or sent to the device a chunk at a time: the transient stays small.
  constexpr int64_t kChunk = 1 << 22;
  auto chunk = torch::empty({std::min(kChunk, out.numel())}, torch::kFloat);
  for (int64_t done = 0; done < out.numel(); done += kChunk) {
    const int64_t numel = std::min(kChunk, out.numel() - done);
    fill(flat_begin + done, numel, chunk.data_ptr<float>());
    out.narrow(0, done, numel).copy_(chunk.narrow(0, 0, numel));
  }
}

void InitialWeights::read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const {
  const auto found = rules_.find(entry.name);
  CR_CHECK(found != rules_.end(), "no initialisation rule for parameter '{}'", entry.name);
  initial_values(found->second, seed_, entry.name, begin, count, out);
}

ModuleWeights::ModuleWeights(torch::nn::Module& module) {
  for (const auto& item : module.named_parameters()) values_[item.key()] = item.value();
}

void ModuleWeights::read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const {
  const auto found = values_.find(entry.name);
  CR_CHECK(found != values_.end(), "the module has no parameter '{}'", entry.name);
  CR_CHECK(found->second.sizes().vec() == entry.global_shape(), "the module holds part of parameter '{}'", entry.name);
  torch::NoGradGuard no_grad;
  torch::from_blob(out, {count}, torch::kFloat)
      .copy_(found->second.detach().reshape({-1}).narrow(0, begin, count).to(torch::kCPU, torch::kFloat));
}

}  // namespace cr
