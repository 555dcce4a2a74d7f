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

torch::Tensor& DeferredModule::declare_parameter(const std::string& name, const std::vector<int64_t>& shape,
                                                 InitRule rule) {
  rules_[name] = rule;
  return register_parameter(name, torch::empty({1}).expand(shape));
}

std::map<std::string, InitRule> parameter_init_rules(torch::nn::Module& model) {
  std::map<std::string, InitRule> rules;
  for (const auto& item : model.named_modules("", /*include_self=*/true)) {
    const auto* declared = dynamic_cast<const DeferredModule*>(item.value().get());
    if (!declared) continue;
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& [name, rule] : declared->init_rules()) rules[prefix + name] = rule;
  }
  for (const auto& item : model.named_parameters()) {
    if (!rules.count(item.key())) fail("model: parameter '{}' has no declared initialisation", item.key());
  }
  return rules;
}

void materialize_parameters(torch::nn::Module& model, uint64_t seed) {
  const auto rules = parameter_init_rules(model);
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    auto values = torch::empty(item.value().sizes(), torch::kFloat);
    initial_values(rules.at(item.key()), seed, item.key(), 0, values.numel(), values.data_ptr<float>());
    item.value().set_data(values);
  }
}

}  // namespace cr
