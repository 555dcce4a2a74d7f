#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/element_type.h"

using cr::AdamIsa;
using cr::AdamStepParams;
using cr::bits_of;
using cr::ElementType;
using cr::float_of;

namespace {

std::vector<AdamIsa> supported_isas() {
  std::vector<AdamIsa> isas;
  for (AdamIsa isa : {AdamIsa::Scalar, AdamIsa::Avx2, AdamIsa::Avx512}) {
    if (cr::adam_isa_supported(isa)) isas.push_back(isa);
  }
  return isas;
}

// Forces a path for the lifetime of the object.
class ForcedIsa {
 public:
  explicit ForcedIsa(AdamIsa isa) : previous_(cr::adam_isa()) { cr::set_adam_isa(isa); }
  ~ForcedIsa() { cr::set_adam_isa(previous_); }
  ForcedIsa(const ForcedIsa&) = delete;
  ForcedIsa& operator=(const ForcedIsa&) = delete;

 private:
  AdamIsa previous_;
};

uint16_t bits_16(ElementType type, float x) {
  return type == ElementType::F16 ? cr::f16_from_float(x) : cr::bf16_from_float(x);
}

// Distance between adjacent values of `type` around magnitude |x|.
double ulp_of(ElementType type, double x) {
  const int mantissa_bits = type == ElementType::F16 ? 10 : type == ElementType::BF16 ? 7 : 23;
  const int min_exponent = type == ElementType::F16 ? -14 : -126;
  const int exponent = x == 0.0 ? min_exponent : std::max(std::ilogb(std::fabs(x)), min_exponent);
  return std::ldexp(1.0, exponent - mantissa_bits);
}

// A buffer of fp32, fp16 or bf16 elements, read and written as fp32.
class TypedBuffer {
 public:
  TypedBuffer(ElementType type, size_t n)
      : type_(type),
        f32_(type == ElementType::F32 ? n : 0),
        bits_(type == ElementType::F32 ? 0 : n) {}
  ElementType type() const { return type_; }
  void* data() {
    return type_ == ElementType::F32 ? static_cast<void*>(f32_.data()) : bits_.data();
  }
  float get(size_t i) const {
    switch (type_) {
      case ElementType::F16: return cr::float_from_f16(bits_[i]);
      case ElementType::BF16: return cr::float_from_bf16(bits_[i]);
      case ElementType::F32: break;
    }
    return f32_[i];
  }
  void set(size_t i, float x) {
    switch (type_) {
      case ElementType::F16: bits_[i] = cr::f16_from_float(x); return;
      case ElementType::BF16: bits_[i] = cr::bf16_from_float(x); return;
      case ElementType::F32: f32_[i] = x; return;
    }
  }

 private:
  ElementType type_;
  std::vector<float> f32_;
  std::vector<uint16_t> bits_;
};

// One element's step in double precision, with the error bound an fp32 implementation may reach:
// about 8 units of fp32 rounding (1e-6) relative to the sum of the magnitudes of the terms of
// each result, so that cancellation between terms does not demand impossible relative accuracy.
struct ReferenceElement {
  double param, exp_avg, exp_avg_sq;
  double param_tolerance, exp_avg_tolerance, exp_avg_sq_tolerance;
};

class Reference {
 public:
  Reference(const AdamStepParams& hp, double relative_tolerance)
      : hp_(hp),
        relative_tolerance_(relative_tolerance),
        step_size_(hp.lr / (1.0 - std::pow(double{hp.beta1}, static_cast<double>(hp.step)))),
        sqrt_bias_correction2_(
            std::sqrt(1.0 - std::pow(double{hp.beta2}, static_cast<double>(hp.step)))) {}

  ReferenceElement step(double p, double g, double m, double v) const {
    const double beta1 = hp_.beta1, beta2 = hp_.beta2, lr = hp_.lr, wd = hp_.weight_decay;
    const double scaled = g * hp_.grad_scale;
    const double l2_term = hp_.decoupled_weight_decay ? 0.0 : wd * p;
    const double grad = scaled + l2_term;
    const double grad_magnitude = std::fabs(scaled) + std::fabs(l2_term);
    ReferenceElement r;
    r.exp_avg = beta1 * m + (1.0 - beta1) * grad;
    r.exp_avg_sq = beta2 * v + (1.0 - beta2) * grad * grad;
    const double decayed = hp_.decoupled_weight_decay ? p * (1.0 - lr * wd) : p;
    const double denom = std::sqrt(r.exp_avg_sq) / sqrt_bias_correction2_ + hp_.eps;
    const double update = step_size_ * r.exp_avg / denom;
    r.param = decayed - update;
    const double exp_avg_magnitude = beta1 * std::fabs(m) + (1.0 - beta1) * grad_magnitude;
    const double exp_avg_sq_magnitude = beta2 * v + (1.0 - beta2) * grad_magnitude * grad_magnitude;
    const double v_amplification = r.exp_avg_sq > 0 ? exp_avg_sq_magnitude / r.exp_avg_sq : 1.0;
    r.exp_avg_tolerance = relative_tolerance_ * exp_avg_magnitude;
    r.exp_avg_sq_tolerance = relative_tolerance_ * exp_avg_sq_magnitude;
    r.param_tolerance =
        relative_tolerance_ * (std::fabs(decayed) + step_size_ * exp_avg_magnitude / denom +
                               std::fabs(update) * v_amplification);
    return r;
  }

 private:
  AdamStepParams hp_;
  double relative_tolerance_, step_size_, sqrt_bias_correction2_;
};

// splitmix64: fast enough for the millions of values each large case draws per step.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float low, float high) {
    return low + (high - low) * static_cast<float>(next() >> 40) * 0x1p-24f;
  }
  // Random sign, binary exponent uniform in [min_exponent, max_exponent], random mantissa.
  float log_uniform(int min_exponent, int max_exponent) {
    const uint64_t r = next();
    const auto exponent = static_cast<uint32_t>(
        127 + min_exponent + static_cast<int>((r >> 32) % (max_exponent - min_exponent + 1)));
    return float_of(static_cast<uint32_t>(r & 0x807FFFFFu) | (exponent << 23));
  }

 private:
  uint64_t state_;
};

// Parameters: in place in one of the three types, or fp32 master weights with a 16-bit copy.
struct ParamLayout {
  ElementType param_type;
  bool with_copy;
  ElementType copy_type;
  std::string name() const {
    return with_copy ? std::string("f32 master + ") + cr::element_type_name(copy_type) + " copy"
                     : cr::element_type_name(param_type);
  }
};

struct Optimizer {
  const char* name;
  bool decoupled;
  float weight_decay;
};

// The state of one optimizer run over n elements.
struct AdamState {
  TypedBuffer param, grad;
  std::vector<float> exp_avg, exp_avg_sq;
  std::vector<uint16_t> param_copy;
  ParamLayout layout;

  AdamState(const ParamLayout& layout, ElementType grad_type, size_t n, Random& rng)
      : param(layout.param_type, n),
        grad(grad_type, n),
        exp_avg(n),
        exp_avg_sq(n),
        param_copy(layout.with_copy ? n : 0),
        layout(layout) {
    for (size_t i = 0; i < n; ++i) {
      param.set(i, i % 97 == 3 ? 0.0f : rng.uniform(-1.0f, 1.0f));
      // As after earlier steps; both moments are zero where every gradient so far was zero.
      const bool fresh = i % 89 == 5;
      const float s = rng.uniform(-0.3f, 0.3f);
      exp_avg[i] = fresh ? 0.0f : rng.uniform(-0.03f, 0.03f);
      exp_avg_sq[i] = fresh ? 0.0f : s * s;
    }
    new_gradients(rng);
  }

  // Gradients from 2^-26 to 2^6 (fp16 subnormals included), some exactly zero.
  void new_gradients(Random& rng) {
    for (size_t i = 0; i < exp_avg.size(); ++i) {
      grad.set(i, i % 101 == 7 ? 0.0f : rng.log_uniform(-26, 6));
    }
  }

  void step(const AdamStepParams& hp) {
    const auto n = static_cast<int64_t>(exp_avg.size());
    if (layout.with_copy) {
      cr::adam_step_master(static_cast<float*>(param.data()), grad.data(), grad.type(),
                           exp_avg.data(), exp_avg_sq.data(), param_copy.data(), layout.copy_type,
                           n, hp);
    } else {
      cr::adam_step(param.data(), param.type(), grad.data(), grad.type(), exp_avg.data(),
                    exp_avg_sq.data(), n, hp);
    }
  }
};

// Runs one step and compares every element against the double reference computed from the
// state before the step. Returns a description of the first mismatch and how many there were.
std::string step_and_compare(AdamState& state, const AdamStepParams& hp,
                             double relative_tolerance) {
  const size_t n = state.exp_avg.size();
  const Reference reference(hp, relative_tolerance);
  std::vector<ReferenceElement> expected(n);
  for (size_t i = 0; i < n; ++i) {
    expected[i] = reference.step(state.param.get(i), state.grad.get(i), state.exp_avg[i],
                                 state.exp_avg_sq[i]);
  }
  state.step(hp);
  size_t mismatches = 0;
  std::ostringstream first;
  first.precision(9);
  auto mismatch = [&](size_t i, const char* what, double got, double want, double tolerance) {
    if (mismatches++ == 0) {
      first << what << "[" << i << "] = " << got << ", reference " << want << " +- " << tolerance;
    }
  };
  const ElementType stored = state.layout.param_type;
  for (size_t i = 0; i < n; ++i) {
    const ReferenceElement& r = expected[i];
    if (!(std::fabs(state.exp_avg[i] - r.exp_avg) <= r.exp_avg_tolerance)) {
      mismatch(i, "exp_avg", state.exp_avg[i], r.exp_avg, r.exp_avg_tolerance);
    }
    if (!(std::fabs(state.exp_avg_sq[i] - r.exp_avg_sq) <= r.exp_avg_sq_tolerance)) {
      mismatch(i, "exp_avg_sq", state.exp_avg_sq[i], r.exp_avg_sq, r.exp_avg_sq_tolerance);
    }
    // A 16-bit parameter is the fp32 result rounded once: half a unit of its last place more.
    const double got = state.param.get(i);
    const double rounding =
        stored == ElementType::F32
            ? 0.0
            : 0.5 * ulp_of(stored, std::max(std::fabs(got), std::fabs(r.param)));
    if (!(std::fabs(got - r.param) <= r.param_tolerance + rounding)) {
      mismatch(i, "param", got, r.param, r.param_tolerance + rounding);
    }
    if (state.layout.with_copy) {
      const float master = state.param.get(i);
      const uint16_t want = bits_16(state.layout.copy_type, master);
      if (state.param_copy[i] != want) mismatch(i, "param_copy", state.param_copy[i], want, 0.0);
    }
  }
  if (mismatches == 0) return {};
  return std::to_string(mismatches) + " mismatches; first: " + first.str();
}

AdamStepParams hyper_parameters(const Optimizer& optimizer, int64_t step) {
  AdamStepParams hp;
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.999f;
  hp.eps = 1e-8f;
  hp.weight_decay = optimizer.weight_decay;
  hp.decoupled_weight_decay = optimizer.decoupled;
  hp.step = step;
  hp.grad_scale = 0.37f;
  return hp;
}

const ParamLayout kParamLayouts[] = {
    {ElementType::F32, false, ElementType::F32},   {ElementType::F16, false, ElementType::F16},
    {ElementType::BF16, false, ElementType::BF16}, {ElementType::F32, true, ElementType::F16},
    {ElementType::F32, true, ElementType::BF16},
};
const Optimizer kOptimizers[] = {
    {"adamw", true, 0.1f}, {"adam (L2)", false, 0.1f}, {"no weight decay", true, 0.0f}};
constexpr int kSteps = 3;

}  // namespace

TEST_CASE("fp16 conversion rounds to nearest even", "[kernels][f16]") {
  CHECK(cr::f16_from_float(1.0f) == 0x3C00);
  CHECK(cr::f16_from_float(-2.0f) == 0xC000);
  CHECK(cr::f16_from_float(-0.0f) == 0x8000);
  // Halfway between 1 and the next fp16 (1 + 2^-10): ties go to the even neighbour.
  CHECK(cr::f16_from_float(1.0f + 0x1p-11f) == 0x3C00);
  CHECK(cr::f16_from_float(1.0f + 3 * 0x1p-11f) == 0x3C02);
  CHECK(cr::f16_from_float(std::nextafter(1.0f + 0x1p-11f, 2.0f)) == 0x3C01);
  // Largest finite value, and the tie above it that rounds to infinity.
  CHECK(cr::f16_from_float(65504.0f) == 0x7BFF);
  CHECK(cr::f16_from_float(65519.0f) == 0x7BFF);
  CHECK(cr::f16_from_float(65520.0f) == 0x7C00);
  CHECK(cr::f16_from_float(1e10f) == 0x7C00);
  CHECK(cr::f16_from_float(-std::numeric_limits<float>::infinity()) == 0xFC00);
  // Subnormals: units of 2^-24, ties to even, the smallest tie to zero.
  CHECK(cr::f16_from_float(0x1p-24f) == 0x0001);
  CHECK(cr::f16_from_float(0x1p-25f) == 0x0000);
  CHECK(cr::f16_from_float(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
  CHECK(cr::f16_from_float(3 * 0x1p-25f) == 0x0002);
  CHECK(cr::f16_from_float(5 * 0x1p-25f) == 0x0002);
  CHECK(cr::f16_from_float(0x1p-14f - 0x1p-25f) == 0x0400);  // largest subnormal rounds up to 2^-14
  CHECK(cr::f16_from_float(1e-30f) == 0x0000);
  CHECK(cr::f16_from_float(-1e-30f) == 0x8000);
  const uint16_t nan = cr::f16_from_float(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00);
  CHECK((nan & 0x03FF) != 0);

  CHECK(cr::float_from_f16(0x0001) == 0x1p-24f);
  CHECK(cr::float_from_f16(0x03FF) == 1023 * 0x1p-24f);
  CHECK(cr::float_from_f16(0x7BFF) == 65504.0f);
  CHECK(cr::float_from_f16(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(cr::float_from_f16(0x7E00)));
  CHECK(bits_of(cr::float_from_f16(0x8000)) == 0x80000000u);
}

TEST_CASE("fp16 conversion round-trips every fp16 value", "[kernels][f16]") {
  int mismatches = 0;
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const float value = cr::float_from_f16(static_cast<uint16_t>(bits));
    if (std::isnan(value) ? (cr::f16_from_float(value) & 0x7FFF) <= 0x7C00
                          : cr::f16_from_float(value) != bits) {
      ++mismatches;
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("bf16 conversion rounds to nearest even", "[kernels][bf16]") {
  CHECK(cr::bf16_from_float(1.0f) == 0x3F80);
  CHECK(cr::bf16_from_float(-0.0f) == 0x8000);
  CHECK(cr::bf16_from_float(1.0f + 0x1p-8f) == 0x3F80);      // tie, even below
  CHECK(cr::bf16_from_float(1.0f + 3 * 0x1p-8f) == 0x3F82);  // tie, even above
  CHECK(cr::bf16_from_float(float_of(0x3F808001u)) == 0x3F81);
  CHECK(cr::bf16_from_float(float_of(0x3F807FFFu)) == 0x3F80);
  CHECK(cr::bf16_from_float(std::numeric_limits<float>::max()) == 0x7F80);  // rounds to infinity
  CHECK(cr::bf16_from_float(std::numeric_limits<float>::infinity()) == 0x7F80);
  // Subnormals are rounded, not flushed.
  CHECK(cr::bf16_from_float(float_of(0x00008000u)) == 0x0000);
  CHECK(cr::bf16_from_float(float_of(0x00018000u)) == 0x0002);
  CHECK(cr::bf16_from_float(float_of(0x00008001u)) == 0x0001);
  CHECK(cr::bf16_from_float(std::numeric_limits<float>::quiet_NaN()) == 0x7FC0);
  CHECK(cr::bf16_from_float(float_of(0xFF800001u)) == 0x7FC0);  // signalling, negative
  CHECK(cr::float_from_bf16(0x3F80) == 1.0f);
  CHECK(bits_of(cr::float_from_bf16(0x0001)) == 0x00010000u);
}

TEST_CASE("every path rounds 16-bit outputs exactly like the scalar conversions",
          "[kernels][adam]") {
  // With lr = 0 and zero moments and gradients, a step leaves fp32 master weights unchanged and
  // writes their 16-bit rounding: a direct test of each path's vector conversions.
  std::vector<float> values = {1.0f,
                               1.0f + 0x1p-8f,
                               1.0f + 3 * 0x1p-8f,
                               1.0f + 0x1p-11f,
                               1.0f + 3 * 0x1p-11f,
                               -(1.0f + 0x1p-11f),
                               65504.0f,
                               65519.0f,
                               65520.0f,
                               -1e10f,
                               0x1p-24f,
                               0x1p-25f,
                               3 * 0x1p-25f,
                               0x1p-14f - 0x1p-25f,
                               float_of(0x00018000u),
                               float_of(0x00008001u),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(),
                               0.0f,
                               -0.0f};
  Random rng(42);
  while (values.size() < 1000) {
    const float x = float_of(static_cast<uint32_t>(rng.next()));
    if (std::isfinite(x)) values.push_back(x);
  }
  const auto n = static_cast<int64_t>(values.size());
  AdamStepParams hp;
  hp.lr = 0.0f;
  for (AdamIsa isa : supported_isas()) {
    const ForcedIsa forced(isa);
    for (ElementType copy_type : {ElementType::F16, ElementType::BF16}) {
      CAPTURE(cr::adam_isa_name(), cr::element_type_name(copy_type));
      std::vector<float> master = values, grad(values.size(), 0.0f), m(values.size()),
                         v(values.size());
      std::vector<uint16_t> copy(values.size());
      cr::adam_step_master(master.data(), grad.data(), ElementType::F32, m.data(), v.data(),
                           copy.data(), copy_type, n, hp);
      int wrong = 0;
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t want = bits_16(copy_type, values[i]);
        const bool same_master = bits_of(master[i]) == bits_of(values[i]) || std::isnan(values[i]);
        if (!same_master || copy[i] != want) ++wrong;
      }
      CHECK(wrong == 0);

      // In place, a 16-bit parameter is read and written back unchanged.
      std::vector<uint16_t> param(values.size());
      for (size_t i = 0; i < values.size(); ++i) param[i] = bits_16(copy_type, values[i]);
      const std::vector<uint16_t> before = param;
      cr::adam_step(param.data(), copy_type, grad.data(), ElementType::F32, m.data(), v.data(), n,
                    hp);
      CHECK(param == before);
    }
  }
}

TEST_CASE("every path and element type matches a double-precision reference", "[kernels][adam]") {
  const AdamIsa isa = GENERATE(from_range(supported_isas()));
  const ParamLayout layout =
      GENERATE(from_range(std::begin(kParamLayouts), std::end(kParamLayouts)));
  const ElementType grad_type = GENERATE(ElementType::F32, ElementType::F16, ElementType::BF16);
  const Optimizer optimizer = GENERATE(from_range(std::begin(kOptimizers), std::end(kOptimizers)));
  const size_t n = GENERATE(1, 7, 15, 17, 1000003);
  const ForcedIsa forced(isa);
  CAPTURE(cr::adam_isa_name(), layout.name(), cr::element_type_name(grad_type), optimizer.name, n);
  Random rng(n * 131 + static_cast<size_t>(grad_type) * 7 + static_cast<size_t>(layout.param_type));
  AdamState state(layout, grad_type, n, rng);
  for (int64_t step = 1; step <= kSteps; ++step) {
    CAPTURE(step);
    CHECK(step_and_compare(state, hyper_parameters(optimizer, step), 1e-6) == "");
    state.new_gradients(rng);
  }
}

// fp32 operations written out one by one: computing in double and rounding once to fp32 gives
// the correctly rounded fp32 result of each +, *, /, sqrt, whatever the compiler contracts.
float f32_add(float a, float b) { return static_cast<float>(double{a} + double{b}); }
float f32_mul(float a, float b) { return static_cast<float>(double{a} * double{b}); }
float f32_div(float a, float b) { return static_cast<float>(double{a} / double{b}); }
float f32_sqrt(float a) { return static_cast<float>(std::sqrt(double{a})); }

TEST_CASE("the scalar fp32 path performs the PyTorch operations in order and rounds each once",
          "[kernels][adam]") {
  const ForcedIsa forced(AdamIsa::Scalar);
  const Optimizer optimizer = GENERATE(from_range(std::begin(kOptimizers), std::end(kOptimizers)));
  CAPTURE(optimizer.name);
  const size_t n = 1000003;
  Random rng(7);
  AdamState state({ElementType::F32, false, ElementType::F32}, ElementType::F32, n, rng);
  for (int64_t step = 1; step <= kSteps; ++step) {
    const AdamStepParams hp = hyper_parameters(optimizer, step);
    // The scalars as PyTorch's AdamW computes them (in double) before applying them to fp32.
    const double bias_correction1 = 1.0 - std::pow(double{hp.beta1}, static_cast<double>(step));
    const double bias_correction2 = 1.0 - std::pow(double{hp.beta2}, static_cast<double>(step));
    const auto neg_step_size = static_cast<float>(-double{hp.lr} / bias_correction1);
    const auto sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
    const auto decay = static_cast<float>(1.0 - double{hp.lr} * hp.weight_decay);
    const auto one_minus_beta1 = static_cast<float>(1.0 - hp.beta1);
    const auto one_minus_beta2 = static_cast<float>(1.0 - hp.beta2);
    std::vector<float> param(n), exp_avg(n), exp_avg_sq(n);
    for (size_t i = 0; i < n; ++i) {
      float p = state.param.get(i);
      float g = f32_mul(state.grad.get(i), hp.grad_scale);
      if (!hp.decoupled_weight_decay)
        g = f32_add(g, f32_mul(p, hp.weight_decay));  // grad.add(p, wd)
      exp_avg[i] = f32_add(f32_mul(state.exp_avg[i], hp.beta1), f32_mul(g, one_minus_beta1));
      exp_avg_sq[i] =
          f32_add(f32_mul(state.exp_avg_sq[i], hp.beta2), f32_mul(f32_mul(g, one_minus_beta2), g));
      if (hp.decoupled_weight_decay) p = f32_mul(p, decay);
      const float denom = f32_add(f32_div(f32_sqrt(exp_avg_sq[i]), sqrt_bias_correction2), hp.eps);
      param[i] = f32_add(p, f32_div(f32_mul(neg_step_size, exp_avg[i]), denom));
    }
    state.step(hp);
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) {
      mismatches += bits_of(state.param.get(i)) != bits_of(param[i]) ||
                    bits_of(state.exp_avg[i]) != bits_of(exp_avg[i]) ||
                    bits_of(state.exp_avg_sq[i]) != bits_of(exp_avg_sq[i]);
    }
    CAPTURE(step);
    CHECK(mismatches == 0);
    state.new_gradients(rng);
  }
}

TEST_CASE("results do not depend on the thread count or the fp32 entry point", "[kernels][adam]") {
  const size_t n = 1000003;
  const AdamStepParams hp = hyper_parameters(kOptimizers[0], 5);
  Random rng(3);
  const ParamLayout fp32{ElementType::F32, false, ElementType::F32};
  const AdamState initial(fp32, ElementType::F32, n, rng);

  AdamState single = initial;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  single.step(hp);
  omp_set_num_threads(3);  // other tile boundaries
  AdamState three = initial;
  three.step(hp);
  omp_set_num_threads(threads);
  AdamState legacy = initial;
  cr::adam_step(static_cast<float*>(legacy.param.data()),
                static_cast<const float*>(legacy.grad.data()), legacy.exp_avg.data(),
                legacy.exp_avg_sq.data(), static_cast<int64_t>(n), hp);

  for (const AdamState* other : {&three, &legacy}) {
    size_t differing = 0;
    for (size_t i = 0; i < n; ++i) {
      differing += bits_of(single.param.get(i)) != bits_of(other->param.get(i)) ||
                   single.exp_avg[i] != other->exp_avg[i] ||
                   single.exp_avg_sq[i] != other->exp_avg_sq[i];
    }
    CHECK(differing == 0);
  }
}

TEST_CASE("the path is chosen from the CPU or CR_ADAM_ISA and can be forced", "[kernels][adam]") {
  CHECK(cr::adam_isa_supported(AdamIsa::Scalar));
  CHECK(cr::adam_isa_from_name("scalar") == AdamIsa::Scalar);
  CHECK(cr::adam_isa_from_name("avx2") == AdamIsa::Avx2);
  CHECK(cr::adam_isa_from_name("avx512") == AdamIsa::Avx512);
  CHECK_FALSE(cr::adam_isa_from_name("sse"));
  CHECK(cr::adam_isa_supported(cr::adam_isa()));
  const char* requested = std::getenv("CR_ADAM_ISA");
  if (requested != nullptr && *requested != '\0') {
    CHECK(std::string(cr::adam_isa_name()) == requested);
  } else {
    CHECK(cr::adam_isa() == supported_isas().back());  // the widest
  }
  for (AdamIsa isa : supported_isas()) {
    const ForcedIsa forced(isa);
    CHECK(cr::adam_isa() == isa);
    CHECK(std::string(cr::adam_isa_name()) == cr::adam_isa_name(isa));
  }
}

TEST_CASE("invalid arguments are rejected and empty steps do nothing", "[kernels][adam]") {
  float param = 1.0f, grad = 1.0f, m = 0.0f, v = 0.0f;
  uint16_t copy = 0;
  AdamStepParams hp;
  hp.lr = 0.1f;
  hp.step = 0;
  CHECK_THROWS_AS(cr::adam_step(&param, &grad, &m, &v, 1, hp), std::invalid_argument);
  hp.step = 1;
  CHECK_THROWS_AS(cr::adam_step(&param, &grad, &m, &v, -1, hp), std::invalid_argument);
  CHECK_THROWS_AS(
      cr::adam_step_master(&param, &grad, ElementType::F32, &m, &v, &copy, ElementType::F32, 1, hp),
      std::invalid_argument);
  cr::adam_step(&param, &grad, &m, &v, 0, hp);
  CHECK(param == 1.0f);
  cr::adam_step(&param, &grad, &m, &v, 1, hp);
  CHECK(param == Approx(0.9f));  // the first step moves by lr * sign(grad)
}
