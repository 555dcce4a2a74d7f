// Where weights come from: the model's declared initialisation (models/parameter_init.h), a
// Hugging Face directory, a checkpoint, or a module's current values. Whoever owns part of the
// weights (a ZeRO shard, a whole replica) asks a source for exactly that part, so no rank builds
// or reads more than it keeps.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "memory/flat_parameters.h"
#include "models/parameter_init.h"

namespace cr {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Elements [begin, begin + count) of the row-major flattening of the whole tensor `entry` is
  // part of (entry.global_shape()), as fp32.
  virtual void read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const = 0;
};

// Fills `out` (any dtype and device) with flat elements [flat_begin, flat_begin + out.numel())
// of the layout `entries` (each entry's part of its whole tensor), through bounded fp32 host
// chunks unless `out` is fp32 on the host.
void fill_flat_range(const WeightSource& source, const std::vector<FlatEntry>& entries, int64_t flat_begin,
                     torch::Tensor out);

// The initial weights for `seed`, by each parameter's declared rule.
class InitialWeights final : public WeightSource {
 public:
  InitialWeights(std::map<std::string, InitRule> rules, uint64_t seed) : rules_(std::move(rules)), seed_(seed) {}
  void read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const override;

 private:
  std::map<std::string, InitRule> rules_;
  uint64_t seed_;
};

// The current values of a module's parameters, by name (a materialised model's, unsplit).
class ModuleWeights final : public WeightSource {
 public:
  explicit ModuleWeights(torch::nn::Module& module);
  void read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const override;

 private:
  std::map<std::string, torch::Tensor> values_;
};

}  // namespace cr
