#include "models/parameter_init.h"

#include <cmath>

#include <ATen/Parallel.h>

#include "core/base/error.h"

namespace cr {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// SplitMix64's output function: a bijective 64-bit mix.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t stream_key(uint64_t seed, const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a of the name
  for (unsigned char c : name) hash = (hash ^ c) * 0x100000001b3ULL;
  return mix64(mix64(seed) ^ hash);
}

// The standard normal pair of counter k: Box-Muller on two 24-bit uniforms from one mixed
// word. Single precision keeps it fast; glibc's logf / sinf / cosf are correctly rounded or
// nearly, the same on every x86-64 machine.
void normal_pair(uint64_t key, int64_t k, float& z0, float& z1) {
  const uint64_t bits = mix64(key + (static_cast<uint64_t>(k) + 1) * kGolden);
  const float u1 = (static_cast<float>(bits >> 40) + 0.5f) * 0x1p-24f;  // (0, 1): the log is finite
  const float u2 = static_cast<float>((bits >> 8) & 0xffffffULL) * 0x1p-24f;
  const float radius = std::sqrt(-2.0f * std::log(u1));
  const float angle = 2.0f * static_cast<float>(M_PI) * u2;
  float sine, cosine;
  sincosf(angle, &sine, &cosine);
  z0 = radius * cosine;
  z1 = radius * sine;
}

}  // namespace

void initial_values(const InitRule& rule, uint64_t seed, const std::string& name, int64_t begin, int64_t count,
                    float* out) {
  if (count <= 0) return;
  if (rule.kind == InitRule::Kind::Constant) {
    std::fill(out, out + count, static_cast<float>(rule.value));
    return;
  }
  const uint64_t key = stream_key(seed, name);
  const float std = static_cast<float>(rule.value);
  const int64_t end = begin + count;
  // Pairs [first, last) cover the range; the ragged ends are written element by element.
  const int64_t first = begin / 2, last = (end + 1) / 2;
  const auto write_checked = [&](int64_t k) {
    float z[2];
    normal_pair(key, k, z[0], z[1]);
    for (int64_t j = 0; j < 2; ++j) {
      if (2 * k + j >= begin && 2 * k + j < end) out[2 * k + j - begin] = std * z[j];
    }
  };
  write_checked(first);
  if (last - 1 > first) write_checked(last - 1);
  at::parallel_for(first + 1, last - 1, 1 << 14, [&](int64_t from, int64_t to) {
    float* pair = out + 2 * from - begin;
    for (int64_t k = from; k < to; ++k, pair += 2) {
      normal_pair(key, k, pair[0], pair[1]);
      pair[0] *= std;
      pair[1] *= std;
    }
  });
}

void DeferredModule::set_init(const std::string& name, InitRule rule) {
  const auto found = rules_.find(name);
  CR_CHECK(found != rules_.end(), "set_init: no parameter '{}' declared", name);
  found->second = rule;
}

void DeferredModule::set_whole_primary(bool primary) {
  for (auto& [name, slice] : slices_) {
    if (slice.whole()) slice.primary = primary;
  }
}

torch::Tensor& DeferredModule::declare_parameter(const std::string& name, const std::vector<int64_t>& shape,
                                                 InitRule rule) {
  return declare_parameter(name, whole_parameter(shape), rule);
}

torch::Tensor& DeferredModule::declare_parameter(const std::string& name, const ParameterSlice& slice, InitRule rule) {
  rules_[name] = rule;
  slices_[name] = slice;
  return register_parameter(name, torch::empty({1}).expand(slice.local_shape()));
}

namespace {

// Each DeferredModule's per-parameter declarations under their full names; cr::Error naming a
// parameter that was not declared through one.
template <typename T>
std::map<std::string, T> declared(torch::nn::Module& model,
                                  const std::map<std::string, T>& (DeferredModule::*table)() const) {
  std::map<std::string, T> out;
  for (const auto& item : model.named_modules("", /*include_self=*/true)) {
    const auto* module = dynamic_cast<const DeferredModule*>(item.value().get());
    if (!module) continue;
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& [name, value] : (module->*table)()) out[prefix + name] = value;
  }
  return out;
}

}  // namespace

std::map<std::string, InitRule> parameter_init_rules(torch::nn::Module& model) {
  auto rules = declared(model, &DeferredModule::init_rules);
  for (const auto& item : model.named_parameters()) {
    if (!rules.count(item.key())) fail("model: parameter '{}' has no declared initialisation", item.key());
  }
  return rules;
}

std::map<std::string, ParameterSlice> parameter_slices(torch::nn::Module& model) {
  auto slices = declared(model, &DeferredModule::slices);
  // Modules that do not declare their parameters (torch's own) hold them whole.
  for (const auto& item : model.named_parameters()) {
    if (!slices.count(item.key())) slices[item.key()] = whole_parameter(item.value().sizes().vec());
  }
  return slices;
}

void set_whole_parameters_primary(torch::nn::Module& model, bool primary) {
  for (const auto& item : model.modules(/*include_self=*/true)) {
    if (auto* module = dynamic_cast<DeferredModule*>(item.get())) module->set_whole_primary(primary);
  }
}

void materialize_parameters(torch::nn::Module& model, uint64_t seed) {
  const auto rules = parameter_init_rules(model);
  const auto slices = parameter_slices(model);
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    auto values = torch::empty(item.value().sizes(), torch::kFloat);
    for_each_global_run(slices.at(item.key()), 0, values.numel(), [&](int64_t global, int64_t local, int64_t numel) {
      initial_values(rules.at(item.key()), seed, item.key(), global, numel, values.data_ptr<float>() + local);
    });
    item.value().set_data(values);
  }
}

}  // namespace cr
