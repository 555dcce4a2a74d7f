// Initial weights as a pure function of (seed, parameter name, element index): any rank can
// create exactly the part of a parameter it owns (a ZeRO shard, later a tensor-parallel slice or
// a pipeline stage's layers) and get the numbers a single process would, without the whole model
// ever existing in one place. docs/initialisation.md gives the generator.
//
// The zoo's layers declare their parameters through DeferredModule: a shape and an InitRule,
// with no storage of their own until someone gives them some (materialize_parameters() for a
// whole model, a ParameterStrategy for the part it owns).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/parameter_slice.h"

namespace cr {

// Hugging Face's initialisation for the zoo: N(0, 0.02) matrices and embeddings.
constexpr double kInitStd = 0.02;

struct InitRule {
  enum class Kind { Normal, Constant };
  Kind kind = Kind::Constant;
  double value = 0.0;  // the standard deviation (Normal, mean 0) or the constant
};
inline InitRule normal_init(double std) { return {InitRule::Kind::Normal, std}; }
inline InitRule constant_init(double value) { return {InitRule::Kind::Constant, value}; }

// Elements [begin, begin + count) of the row-major flattening of parameter `name` under `rule`.
// Normal values come in pairs: elements 2k and 2k+1 are the Box-Muller pair of counter k of the
// stream (seed, name), so a range may start and end anywhere.
void initial_values(const InitRule& rule, uint64_t seed, const std::string& name, int64_t begin, int64_t count,
                    float* out);

class DeferredModule : public torch::nn::Module {
 public:
  // This module's own parameters (not its children's): local name -> rule, and -> where this
  // rank's part sits in the whole tensor.
  const std::map<std::string, InitRule>& init_rules() const { return rules_; }
  const std::map<std::string, ParameterSlice>& slices() const { return slices_; }
  // Changes a declared parameter's rule (GPT-2 scales its residual projections).
  void set_init(const std::string& name, InitRule rule);
  // Whole parameters are copies on every tensor rank; only one rank's copies are primary.
  void set_whole_primary(bool primary);

 protected:
  // Registers parameter `name` of `shape` backed by a single broadcast element: it has its real
  // shape for layouts and names, and no storage until given some.
  torch::Tensor& declare_parameter(const std::string& name, const std::vector<int64_t>& shape, InitRule rule);
  // The same for this rank's part of a split parameter (its local shape).
  torch::Tensor& declare_parameter(const std::string& name, const ParameterSlice& slice, InitRule rule);

 private:
  std::map<std::string, InitRule> rules_;
  std::map<std::string, ParameterSlice> slices_;
};

// Every parameter of `model` by full name ("h.0.attn.c_proj.weight") -> its rule. cr::Error
// naming a parameter that was not declared through a DeferredModule.
std::map<std::string, InitRule> parameter_init_rules(torch::nn::Module& model);

// Every parameter of `model` by full name -> where this rank's part sits in the whole tensor
// (the whole tensor for parameters of modules that are not DeferredModules).
std::map<std::string, ParameterSlice> parameter_slices(torch::nn::Module& model);

// Marks the whole (replicated) parameters of `model` primary or not (tensor rank 0 or another).
void set_whole_parameters_primary(torch::nn::Module& model, bool primary);

// Gives every parameter of `model` fp32 CPU storage of its own holding its initial values.
void materialize_parameters(torch::nn::Module& model, uint64_t seed);

}  // namespace cr
