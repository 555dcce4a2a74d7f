// Training layouts against the single-process run, for the multi-rank tests (data, tensor,
// sequence and pipeline parallelism) run under mpirun: tiny models, a config with clipping,
// accumulation and evaluation, the comparison of losses, gradient norms and validation losses,
// and Hugging Face directories written and compared.
#pragma once

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/formats/safetensors.h"
#include "core/train/hf_export.h"
#include "core/train/train_checkpoint.h"
#include "core/train/trainer.h"
#include "memory/parameter_strategy.h"
#include "models/causal_lm.h"
#include "parallel/parallel_context.h"
#include "models/model_spec.h"
#include "models/parameter_slice.h"
#include "parallel/communicator.h"
#include "tests/run_config.h"

namespace cr::test {

inline Communicator* g_world = nullptr;  // set by the test's main

// Tiny models whose heads, key/value heads and MLP split over 4 ranks; LLaMA keeps 2 key/value
// heads, so at 4 ranks each is copied to two of them.
inline ModelSpec tiny_spec(const std::string& arch) {
  ModelSpec spec = find_model_preset(arch + "-tiny").spec;
  spec.n_head = 4;
  if (arch != "llama") spec.n_kv_head = 4;
  spec.vocab_size = 509;  // not divisible by 2 or 4: the vocabulary splits unevenly
  return spec;
}

// The part of `whole` that a slice describes, in the slice's local shape.
inline torch::Tensor slice_of(const torch::Tensor& whole, const ParameterSlice& slice) {
  auto flat = whole.detach().contiguous().reshape({-1});
  auto out = torch::empty({element_count(slice.local_shape())}, flat.options());
  for_each_global_run(slice, 0, out.numel(), [&](int64_t global, int64_t local, int64_t n) {
    out.narrow(0, local, n).copy_(flat.narrow(0, global, n));
  });
  return out.view(slice.local_shape());
}

inline std::map<std::string, torch::Tensor> by_name(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters()) out[item.key()] = item.value();
  return out;
}

inline double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// The loss of `batch` random sequences (seed 3) and every gradient of `split`, this rank's slices,
// against the whole model's, within 1e-5.
inline void check_loss_and_gradients(CausalLMImpl& whole, CausalLMImpl& split, int64_t batch) {
  const ModelSpec& spec = whole.spec();
  torch::manual_seed(3);
  const auto tokens = torch::randint(0, spec.vocab_size, {batch, 16}, torch::kLong);
  const auto targets = torch::randint(0, spec.vocab_size, {batch, 16}, torch::kLong);
  const auto whole_loss = whole.loss(tokens, targets);
  const auto split_loss = split.loss(tokens, targets);
  CHECK(std::abs(whole_loss.item<double>() - split_loss.item<double>()) < 1e-5);
  whole_loss.backward();
  split_loss.backward();
  const auto whole_params = by_name(whole);
  const auto slices = parameter_slices(split);
  for (const auto& item : split.named_parameters()) {
    INFO(item.key());
    const auto expected = slice_of(whole_params.at(item.key()).grad(), slices.at(item.key()));
    CHECK(max_difference(item.value().grad(), expected) < 1e-5);
  }
}

// This rank's scratch directory, and one all ranks of the job share.
inline std::filesystem::path rank_dir(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("cr-test-layout-" + name + "-" + std::to_string(getppid()) + "-" + std::to_string(g_world->rank()));
}

inline std::filesystem::path shared_dir(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("cr-test-layout-" + name + "-" + std::to_string(getppid()));
}

inline Config tp_config(const std::string& arch, const std::filesystem::path& run_dir,
                        std::vector<std::string> overrides) {
  const ModelSpec spec = tiny_spec(arch);
  std::string yaml = R"(
model: {preset: ARCH-tiny, n_head: 4, n_kv_head: KV, vocab_size: 509}
data: {format: synthetic, seq_len: 32}
train: {micro_batch_size: 1, global_batch_size: 8, steps: 6, log_every: 100, eval_every: 3, eval_batches: 4,
        seed: 17, clip_grad_norm: 0.3}
optimizer: {lr: 3.0e-3}
lr_schedule: {warmup_steps: 2, min_lr: 1.0e-4}
checkpoint: {every: 0, save_final: false}
runtime: {threads: 1, progress_bar: false, run_dir: RUN_DIR}
)";
  yaml.replace(yaml.find("ARCH"), 4, arch);
  yaml.replace(yaml.find("KV"), 2, std::to_string(spec.n_kv_head));
  return run_config(yaml, run_dir, std::move(overrides), "layout-test");
}

// Losses within `tolerance` and gradient norms within `tolerance` relative, from `first_step` on.
inline void check_losses(const TrainSummary& parallel, const TrainSummary& reference, int64_t first_step = 0,
                         double tolerance = 1e-5) {
  REQUIRE(parallel.losses.size() + first_step == reference.losses.size());
  for (size_t i = 0; i < parallel.losses.size(); ++i) {
    const auto& ref = reference.steps[i + first_step];
    INFO("step " << ref.step);
    CHECK(std::abs(parallel.losses[i] - reference.losses[i + first_step]) < tolerance);
    CHECK(std::abs(parallel.steps[i].grad_norm - ref.grad_norm) <= tolerance * ref.grad_norm);
  }
}

// 10 steps with clipping (the norm is above 0.3 throughout) and gradient accumulation; `model`:
// overrides both runs share (model.n_layer for deep pipelines).
inline void check_training(const std::string& arch, const std::vector<std::string>& layout,
                           const std::vector<std::string>& model = {}) {
  INFO(arch << " with " << fmt::format("{} {}", fmt::join(layout, " "), fmt::join(model, " ")));
  const auto dir = rank_dir("train");
  std::vector<std::string> common = model;
  common.push_back("train.steps=10");
  std::vector<std::string> overrides = common;
  overrides.insert(overrides.end(), layout.begin(), layout.end());
  const auto reference = run_training(tp_config(arch, dir / "single", common), nullptr);
  const auto parallel = run_training(tp_config(arch, dir / "layout", overrides), g_world);
  check_losses(parallel, reference);
  for (const auto& step : reference.steps) CHECK(step.grad_norm > 0.3);  // clipping is active
  REQUIRE(parallel.val_losses.size() == reference.val_losses.size());
  for (size_t i = 0; i < reference.val_losses.size(); ++i) {
    CHECK(std::abs(parallel.val_losses[i].second - reference.val_losses[i].second) < 1e-5);
  }
  std::filesystem::remove_all(dir);
}

// `layout` against the single-process run, both with `common` (a 16-bit precision.dtype): the
// losses and gradient norms agree to 16-bit precision only, since 16-bit matmuls round
// differently once split.
inline void check_training_16bit(const std::string& arch, const std::vector<std::string>& common,
                                 const std::vector<std::string>& layout) {
  const auto dir = rank_dir("precision");
  auto overrides = common;
  overrides.insert(overrides.end(), layout.begin(), layout.end());
  const auto reference = run_training(tp_config(arch, dir / "single", common), nullptr);
  const auto parallel = run_training(tp_config(arch, dir / "layout", overrides), g_world);
  REQUIRE(parallel.losses.size() == reference.losses.size());
  for (size_t i = 0; i < reference.losses.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(std::abs(parallel.losses[i] - reference.losses[i]) < 2e-2);
    CHECK(std::abs(parallel.steps[i].grad_norm - reference.steps[i].grad_norm) < 5e-2 * reference.steps[i].grad_norm);
  }
  std::filesystem::remove_all(dir);
}

// The example config `config_file` trained for `steps` steps on the byte-level text `data` over
// every rank, with `overrides`: the loss starts near uniform over the 512 bytes and validation
// falls below 0.6 of it.
inline void check_example_learns(const std::string& config_file, const std::string& data, int64_t steps,
                                 std::vector<std::string> overrides) {
  const auto dir = rank_dir("example");
  const std::vector<std::string> common{"data.train=" + data, "train.steps=" + std::to_string(steps),
                                        "train.eval_every=" + std::to_string(steps), "train.eval_batches=4",
                                        "runtime.threads=1", "runtime.run_dir=" + dir.string(),
                                        "runtime.progress_bar=false", "train.peak_flops=1.0e9",
                                        "checkpoint.save_final=false", "checkpoint.every=0"};
  overrides.insert(overrides.begin(), common.begin(), common.end());
  const auto summary = run_training(load_config_file(config_file, overrides), g_world);
  REQUIRE(summary.val_losses.size() == 1);
  const double uniform = std::log(512.0);
  CHECK(summary.losses.front() > 0.9 * uniform);
  CHECK(summary.val_losses.back().second < 0.6 * uniform);
  std::filesystem::remove_all(dir);
}

// The whole model of `spec` initialised from `seed`, written as a Hugging Face directory.
inline void write_initial_hf_model(const ModelSpec& spec, uint64_t seed, const std::filesystem::path& dir) {
  auto whole = build_model(spec, seed);
  std::vector<TensorView> views;
  std::vector<torch::Tensor> keep;
  for (const auto& item : whole->named_parameters()) {
    keep.push_back(item.value().detach().contiguous());
    views.push_back({item.key(), DType::F32, keep.back().sizes().vec(), keep.back().data_ptr<float>(),
                     static_cast<size_t>(keep.back().numel()) * sizeof(float)});
  }
  write_hf_model(dir.string(), spec, views, DType::F32);
}

// The two directories' model.safetensors hold the same tensors, bit for bit.
inline void check_same_safetensors(const std::filesystem::path& a, const std::filesystem::path& b) {
  const SafetensorsFile before((a / "model.safetensors").string());
  const SafetensorsFile after((b / "model.safetensors").string());
  CHECK(before.names() == after.names());
  for (const auto& name : before.names()) {
    INFO(name);
    const auto& x = before.get(name);
    const auto& y = after.get(name);
    REQUIRE(x.shape == y.shape);
    REQUIRE(x.nbytes == y.nbytes);
    CHECK(std::memcmp(x.data, y.data, x.nbytes) == 0);
  }
}

// `strategy`'s part of the weights saved as a checkpoint of `config` in dir/ckpt by every rank,
// then exported by rank 0 to dir/exported: the same tensors as the Hugging Face directory
// `original`, bit for bit.
inline void check_export_round_trip(const Config& config, ParameterStrategy& strategy, const ModelSpec& spec,
                                    const ParallelContext& context, const std::filesystem::path& dir,
                                    const std::filesystem::path& original) {
  const std::string checkpoint =
      save_train_checkpoint((dir / "ckpt").string(), config, TrainState{{0, 0}, 0, std::nullopt, ""},
                            strategy.checkpoint_part(), parameter_count(spec), 1, context);
  if (g_world->rank() == 0) {
    HfExportOptions options;
    options.checkpoint = checkpoint;
    options.out_dir = (dir / "exported").string();
    export_hf_checkpoint(options);
    check_same_safetensors(original, dir / "exported");
  }
  g_world->barrier();
}

}  // namespace cr::test
