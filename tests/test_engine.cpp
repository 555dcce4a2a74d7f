// The engine's seams without a multi-rank job: block membership from the model's structure, the
// ZeRO strategy's checkpoint part, metrics continuation on resume, the single-process context.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/checkpoint/checkpoint_store.h"
#include "core/formats/safetensors.h"
#include "core/train/host_tensor_bytes.h"
#include "core/train/metrics.h"
#include "core/train/runtime.h"
#include "core/train/train_checkpoint.h"
#include "memory/flat_parameters.h"
#include "memory/zero_strategy.h"
#include "models/causal_lm.h"
#include "models/model_spec.h"
#include "parallel/parallel_context.h"
#include "temp_dir.h"

using namespace cr;
namespace fs = std::filesystem;

namespace {

// gpt2-tiny, initialised from `seed`, under a single-process ZeRO strategy of `stage`.
struct TinyTraining {
  TinyTraining(uint64_t seed, int stage) : spec(find_model_preset("gpt2-tiny").spec) {
    model = build_model_skeleton(spec);
    const InitialWeights initial(parameter_init_rules(*model), seed);
    ZeroOptions options;
    options.stage = stage;
    options.bucket_bytes = 4096;
    strategy = std::make_unique<ZeroStrategy>(module_parameters(*model, model->blocks()), &initial, spec.n_layer,
                                              options, nullptr);
  }
  ModelSpec spec;
  CausalLM model;
  std::unique_ptr<ZeroStrategy> strategy;
};

}  // namespace

TEST_CASE("block membership comes from the model's blocks and matches the analytic parameter list", "[engine]") {
  for (const std::string preset : {"gpt2-tiny", "opt-tiny", "llama-tiny"}) {
    INFO(preset);
    const ModelSpec spec = find_model_preset(preset).spec;
    auto model = build_model(spec);
    FlatParameters flat(*model, torch::kFloat, model->blocks());
    const auto analytic = flat_layout(parameter_shapes(spec));
    REQUIRE(flat.entries().size() == analytic.size());
    int64_t in_blocks = 0;
    for (size_t i = 0; i < analytic.size(); ++i) {
      INFO(analytic[i].name);
      CHECK(flat.entries()[i].name == analytic[i].name);
      CHECK(flat.entries()[i].layer == analytic[i].layer);
      in_blocks += analytic[i].layer >= 0;
    }
    CHECK(in_blocks > 0);
    // Without the blocks every parameter is outside any layer.
    FlatParameters plain(*build_model(spec), torch::kFloat);
    for (const auto& entry : plain.entries()) CHECK(entry.layer == -1);
  }
}

TEST_CASE("a strategy's checkpoint part covers every element once and loads into another stage", "[engine]") {
  test::TempDir dir;
  TinyTraining tiny(1, 0);
  ZeroStrategy& source = *tiny.strategy;
  const auto part = source.checkpoint_part();
  int64_t elements = 0;
  for (const auto& slice : part.slices) elements += slice.elements();
  CHECK(elements == 3 * source.numel());  // weights and two moments, each element once

  const ParallelContext single;
  Config config;
  const TrainState state{{5, 40}, 5, std::nullopt, ""};
  const auto checkpoint = save_train_checkpoint(dir.file("ckpt"), config, state, part, source.numel(), 0, single);
  auto opened = open_train_checkpoint(checkpoint);
  CHECK(opened.state.position.step == 5);
  CHECK(opened.state.optimizer_steps == 5);

  TinyTraining other(2, 3);  // other initial weights, overwritten by the load
  ZeroStrategy& target = *other.strategy;
  target.load_checkpoint(*opened.reader, opened.state.optimizer_steps);
  CHECK(torch::equal(target.full_weights(), source.full_weights()));
  CHECK(target.optimizer_steps() == 5);
}

TEST_CASE("a checkpoint of the previous format (whole tensors, no slices) still resumes", "[engine]") {
  test::TempDir dir;
  TinyTraining source(3, 0);
  const auto weights = source.strategy->full_weights();
  const auto moments = torch::full_like(weights, 0.25);
  // What the previous release wrote: model.safetensors and optimizer.safetensors, whole tensors.
  std::vector<TensorView> model_views, optimizer_views;
  for (const auto& e : source.strategy->parameters().entries()) {
    const size_t bytes = static_cast<size_t>(e.numel) * sizeof(float);
    model_views.push_back({e.name, DType::F32, e.shape, weights.data_ptr<float>() + e.offset, bytes});
    for (const std::string kind : {"exp_avg.", "exp_avg_sq."}) {
      optimizer_views.push_back({kind + e.name, DType::F32, e.shape, moments.data_ptr<float>() + e.offset, bytes});
    }
  }
  CheckpointWriter writer(dir.path().string(), 7);
  writer.write_tensors("model.safetensors", model_views, {{"format", "pt"}});
  writer.write_tensors("optimizer.safetensors", optimizer_views);
  const auto checkpoint = writer.commit({{"kind", "colossal-run training state"},
                                         {"optimizer_step", 6},
                                         {"samples_consumed", 56},
                                         {"mesh", {{"world_size", 2}, {"data", 2}, {"tensor", 1}, {"pipeline", 1}}}});

  auto opened = open_train_checkpoint(checkpoint);
  CHECK(opened.state.position.step == 7);
  CHECK(opened.state.optimizer_steps == 6);
  TinyTraining other(4, 2);
  ZeroStrategy& target = *other.strategy;
  target.load_checkpoint(*opened.reader, opened.state.optimizer_steps);
  CHECK(torch::equal(target.full_weights(), weights));
  const auto part = target.checkpoint_part();  // the moments came back too
  CHECK(torch::equal(part.storage[1], moments));
  CHECK(torch::equal(part.storage[2], moments));
}

TEST_CASE("a resumed run's metrics.jsonl keeps each step once", "[engine]") {
  test::TempDir dir;
  const auto path = dir.file("metrics.jsonl");
  {
    MetricsFile first(path, 0, "0123456789abcdef", false);
    for (int64_t step = 1; step <= 6; ++step) {
      StepMetrics m;
      m.step = step;
      m.tokens_seen = step * 64;
      first.write_step(m);
    }
    first.write_eval(4, 2.5);
  }
  { std::ofstream(path, std::ios::app) << "{\"kind\": \"train\", \"st"; }  // a killed writer's torn line
  {
    MetricsFile resumed(path, 4, "0123456789abcdef", false);  // the checkpoint was at step 4; steps 5-6 run again
    StepMetrics m;
    m.step = 5;
    m.tokens_seen = 320;
    resumed.write_step(m);
    RunTotals totals;
    totals.first_step = 4;
    totals.last_step = 5;
    totals.final_loss = 2.25;
    totals.best_val_loss = 2.5;
    resumed.write_summary(totals);
  }
  std::ifstream in(path);
  std::vector<std::pair<std::string, int64_t>> records;
  std::vector<nlohmann::json> parsed;
  for (std::string line; std::getline(in, line);) {
    parsed.push_back(nlohmann::json::parse(line));
    records.emplace_back(parsed.back()["kind"], parsed.back()["step"]);
    CHECK(parsed.back()["run"] == "0123456789abcdef");  // every record names its run
  }
  CHECK(records == std::vector<std::pair<std::string, int64_t>>{{"train", 1}, {"train", 2},  {"train", 3},
                                                                {"train", 4}, {"eval", 4},   {"train", 5},
                                                                {"summary", 5}});
  CHECK(parsed[3]["tokens"] == 256);
  CHECK(parsed[4]["perplexity"].get<double>() == Approx(std::exp(2.5)));
  CHECK(parsed[6]["best_val_loss"] == 2.5);
  CHECK(parsed[6]["final_loss"] == 2.25);
}

TEST_CASE("host tensor bytes count the CPU tensors made and freed while installed", "[engine]") {
  CHECK(HostTensorBytes::active() == nullptr);
  {
    HostTensorBytes::Scope scope;
    HostTensorBytes& bytes = scope.bytes();
    CHECK(HostTensorBytes::active() == &bytes);
    {
      const auto kept = torch::empty({1 << 20}, torch::kFloat);  // 4 MiB
      CHECK(bytes.current() == 4 << 20);
      bytes.reset_peak();
      { const auto passing = torch::empty({1 << 18}, torch::kFloat); }  // 1 MiB, freed at once
      CHECK(bytes.current() == 4 << 20);
      CHECK(bytes.peak() == 5 << 20);
    }
    CHECK(bytes.current() == 0);
  }
  CHECK(HostTensorBytes::active() == nullptr);
}

TEST_CASE("the single-process context has every axis of size 1 and no communicators", "[engine]") {
  CHECK(mesh_axes_of(Axis::DataSequence) == std::vector<std::string>{"data", "sequence"});
  CHECK(axis_name(Axis::DataSequence) == "data x sequence");
  const ParallelContext single;
  for (const Axis axis : kAllAxes) {
    CHECK(single.size(axis) == 1);
    CHECK(single.rank(axis) == 0);
    CHECK(single.host_group(axis) == nullptr);
    CHECK(single.device_group(axis) == nullptr);
  }
  CHECK(single.control() == nullptr);
}

TEST_CASE("the peak RSS restarts from the current one, so steps are measured apart from start-up", "[engine]") {
  constexpr int64_t kBytes = 256 << 20;
  {
    std::vector<char> block(kBytes, 1);  // touched, so resident
    CHECK(peak_rss_bytes() >= kBytes);
  }
  const int64_t with_block = peak_rss_bytes();
  reset_peak_rss();
  CHECK(peak_rss_bytes() <= with_block - kBytes / 2);  // the freed block is no longer in the peak
}
