// End-to-end training: loss falls on real text, resume is bitwise exact, corrupted checkpoints
// are refused, run directories hold what they promise.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/checkpoint/checkpoint_store.h"
#include "core/config/config.h"
#include "core/base/error.h"
#include "core/train/runtime.h"
#include "core/train/trainer.h"
#include "models/mixed_precision.h"
#include "tests/shared_data.h"
#include "tests/tfevents_reader.h"

using namespace cr;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("cr-test-train-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A tiny GPT-2 on synthetic tokens; every test overrides what it needs.
Config tiny_config(const fs::path& run_dir, std::vector<std::string> overrides = {}) {
  const std::string yaml = R"(
model: {preset: gpt2-tiny, dropout: 0.1}
data: {format: synthetic, seq_len: 32}
train: {micro_batch_size: 2, global_batch_size: 4, steps: 8, log_every: 100, eval_every: 0, seed: 7}
optimizer: {lr: 1.0e-3}
lr_schedule: {warmup_steps: 2, min_lr: 1.0e-4, decay_steps: 8}  # fixed, so a shorter run shares the schedule
checkpoint: {every: 4, keep: 5}
runtime: {threads: 1, progress_bar: false, run_dir: RUN_DIR}
)";
  std::string text = yaml;
  text.replace(text.find("RUN_DIR"), 7, run_dir.string());
  overrides.push_back("train.peak_flops=1.0e9");  // skip the start-up GEMM measurement
  return load_config_text(text, "test", overrides);
}

// The loss of `step`'s train record in a metrics file.
double summary_record_loss(const fs::path& metrics, int64_t step) {
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record["kind"] == "train" && record["step"] == step) return record["loss"].get<double>();
  }
  return -1.0;
}

}  // namespace

TEST_CASE("resume from a checkpoint reproduces the uninterrupted losses bit for bit", "[train]") {
  const auto dir = fresh_dir("resume");
  const auto full = run_training(tiny_config(dir / "full"));
  REQUIRE(full.losses.size() == 8);

  auto first_half = run_training(tiny_config(dir / "split", {"train.steps=4"}));
  REQUIRE(first_half.losses.size() == 4);
  const auto resumed = run_training(tiny_config(dir / "split"));
  CHECK(resumed.first_step == 4);
  REQUIRE(resumed.losses.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    INFO("step " << i + 1);
    CHECK(first_half.losses[i] == full.losses[i]);
    CHECK(resumed.losses[i] == full.losses[4 + i]);  // exact, not approximate
  }
  // metrics.jsonl continues across the restart: one train record per step, and each run's summary.
  std::ifstream metrics(dir / "split" / "metrics.jsonl");
  int steps = 0;
  std::vector<int64_t> summaries;
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record["kind"] == "summary") {
      summaries.push_back(record["step"]);
    } else {
      CHECK(record["step"].get<int>() == ++steps);
    }
  }
  CHECK(steps == 8);
  CHECK(summaries == std::vector<int64_t>{4, 8});
  fs::remove_all(dir);
}

TEST_CASE("activation checkpointing, full or selective, trains bit for bit like keeping activations", "[train]") {
  // Dropout on: the recomputation must draw the masks the first run drew.
  const auto dir = fresh_dir("recompute");
  const auto kept = run_training(tiny_config(dir / "none", {"train.steps=4", "checkpoint.save_final=false"}));
  for (const char* mode : {"full", "selective"}) {
    INFO(mode);
    const auto recomputed = run_training(tiny_config(
        dir / mode, {"train.steps=4", "checkpoint.save_final=false", std::string("train.activation_checkpointing=") + mode}));
    REQUIRE(recomputed.losses.size() == kept.losses.size());
    for (size_t i = 0; i < kept.losses.size(); ++i) {
      CHECK(recomputed.losses[i] == kept.losses[i]);
      CHECK(recomputed.steps[i].grad_norm == kept.steps[i].grad_norm);
    }
    CHECK(recomputed.parameters_crc32 == kept.parameters_crc32);
  }
  fs::remove_all(dir);
}

TEST_CASE("a corrupted or truncated checkpoint is refused with the file named", "[train]") {
  const auto dir = fresh_dir("corrupt");
  run_training(tiny_config(dir, {"train.steps=4", "checkpoint.every=2"}));
  const auto latest = latest_checkpoint((dir / "checkpoints").string());
  REQUIRE(latest);
  const auto model_file = fs::path(*latest) / "shard-00000-of-00001.safetensors";
  {
    std::fstream file(model_file, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-5, std::ios::end);
    file.put('\x5a');
  }
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=6"})),
                    Catch::Contains("shard-00000-of-00001.safetensors") && Catch::Contains("crc32"));
  fs::resize_file(model_file, 100);
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=6"})), Catch::Contains("truncated"));
  // The older checkpoint is untouched and can still be resumed explicitly.
  const auto older = (dir / "checkpoints" / checkpoint_dir_name(2)).string();
  CHECK_NOTHROW(verify_checkpoint(older));
  const auto resumed = run_training(tiny_config(dir, {"train.steps=3", "checkpoint.resume=" + older}));
  CHECK(resumed.first_step == 2);
  fs::remove_all(dir);
}

TEST_CASE("resuming into another model is refused naming the keys, other changes are applied", "[train][resume]") {
  const auto dir = fresh_dir("other-model");
  run_training(tiny_config(dir, {"train.steps=2", "checkpoint.every=2"}));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=4", "model.max_seq_len=64"})),
                    Catch::Contains("checkpoints/step_00000002 holds another model: max_seq_len 128 (checkpoint) vs "
                                    "64 (now) (model.max_seq_len: null -> 64)"));
  // Regression: a checkpoint of more layers resumed silently into fewer (its extra tensors unread).
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=4", "model.n_layer=1"})),
                    Catch::Contains("holds another model: n_layer 2 (checkpoint) vs 1 (now) (model.n_layer: null -> 1)"));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=4", "model.preset=llama-mini"})),
                    Catch::Contains("holds another model: arch gpt2 (checkpoint) vs llama (now)") &&
                        Catch::Contains("model.preset: gpt2-tiny -> llama-mini"));
  // The same model spelled out dimension by dimension is the same model; steps, schedule, batch split and
  // precision may change.
  const auto resumed = run_training(tiny_config(
      dir, {"train.steps=4", "train.micro_batch_size=1", "optimizer.lr=5.0e-4", "precision.dtype=bf16"}));
  CHECK(resumed.first_step == 2);
  CHECK(resumed.losses.size() == 2);
  fs::remove_all(dir);
}

TEST_CASE("a fresh start never overwrites or prunes an earlier run", "[train][resume]") {
  const auto dir = fresh_dir("fresh-start");
  run_training(tiny_config(dir, {"train.steps=4", "checkpoint.every=2", "checkpoint.keep=2"}));
  // Regression: resume none truncated the old run's metrics.jsonl, and keep pruned the new run's checkpoint.
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=2", "checkpoint.resume=none"})),
                    Catch::StartsWith("checkpoint.resume is none, but " + dir.string() + " already holds a run (" +
                                      (dir / "checkpoints" / checkpoint_dir_name(4)).string() + ")"));
  std::ifstream metrics(dir / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  CHECK(lines == 5);  // 4 steps and the run's summary, untouched

  // Checkpoints carry their run's name, which a resumed run keeps, so that pruning keeps to its own run.
  const auto resumed = run_training(tiny_config(dir, {"train.steps=6", "checkpoint.every=2", "checkpoint.keep=2"}));
  CHECK(resumed.first_step == 4);
  const std::string run = checkpoint_run((dir / "checkpoints" / checkpoint_dir_name(6)).string());
  CHECK(run.size() == 16);
  CHECK(checkpoint_run((dir / "checkpoints" / checkpoint_dir_name(4)).string()) == run);
  CHECK_FALSE(fs::exists(dir / "checkpoints" / checkpoint_dir_name(2)));
  fs::remove_all(dir);
}

TEST_CASE("run directories that cannot be made are named by their key before any step", "[train][resume]") {
  const auto dir = fresh_dir("bad-dirs");
  const std::string long_name(300, 'a');
  // Regression: a long name or a file in the way failed as a raw filesystem error, the checkpoint root only after
  // the first step.
  CHECK_THROWS_WITH(run_training(tiny_config(dir / long_name)),
                    Catch::StartsWith("runtime.run_dir '" + dir.string() + "/aaa") &&
                        Catch::Contains("': cannot create the directory: File name too long"));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"runtime.run_dir=/dev/null"})),
                    "runtime.run_dir '/dev/null': exists and is not a directory");
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"checkpoint.dir=" + (dir / long_name).string()})),
                    Catch::StartsWith("checkpoint.dir '") && Catch::Contains("File name too long"));
  CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));
  fs::remove_all(dir);
}

TEST_CASE("the run directory holds the resolved config, metrics and pruned checkpoints", "[train]") {
  const auto dir = fresh_dir("rundir");
  const auto summary = run_training(tiny_config(dir, {"checkpoint.every=2", "checkpoint.keep=2"}));
  const auto resolved = load_config_file((dir / "config.yaml").string());
  CHECK(resolved.train.steps == 8);
  CHECK(resolved.model.preset.value() == "gpt2-tiny");
  std::vector<std::string> kept;
  for (const auto& entry : fs::directory_iterator(dir / "checkpoints")) kept.push_back(entry.path().filename());
  std::sort(kept.begin(), kept.end());
  CHECK(kept == std::vector<std::string>{checkpoint_dir_name(6), checkpoint_dir_name(8)});
  CHECK(summary.last_checkpoint.value() == (dir / "checkpoints" / checkpoint_dir_name(8)).string());
  std::ifstream metrics(dir / "metrics.jsonl");
  std::string line;
  std::getline(metrics, line);
  const auto record = nlohmann::json::parse(line);
  for (const char* key : {"loss", "lr", "grad_norm", "tokens_per_s", "flops_per_s", "mfu", "peak_host_bytes", "run",
                          "tokens"}) {
    CHECK(record.contains(key));
  }
  CHECK(record["tokens"] == 4 * 32);  // global batch 4 x seq_len 32 after step 1
  std::string last;
  while (std::getline(metrics, line)) last = line;
  const auto totals = nlohmann::json::parse(last);
  CHECK(totals["kind"] == "summary");
  CHECK(totals["run"] == record["run"]);
  CHECK(totals["final_loss"] == summary_record_loss(dir / "metrics.jsonl", 8));
  CHECK(totals["final_loss"] == summary.losses.back());
  // train.log: what rank 0 printed, time-stamped.
  std::ifstream log(dir / "train.log");
  std::string first_log;
  std::getline(log, first_log);
  CHECK_THAT(first_log, Catch::Matches(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] run [0-9a-f]{16} in .* starting fresh at step 0)"));
  bool logged_last_step = false;
  for (std::string entry; std::getline(log, entry);) logged_last_step |= entry.find("] step 8/8 | loss") != std::string::npos;
  CHECK(logged_last_step);
  fs::remove_all(dir);
}

TEST_CASE("runtime.tensorboard writes every step's and evaluation's metrics as TensorBoard events",
          "[train][tensorboard]") {
  const auto dir = fresh_dir("tensorboard");
  run_training(tiny_config(dir, {"runtime.tensorboard=true", "train.eval_every=4", "train.eval_batches=1"}));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir / "tensorboard")) files.push_back(entry.path());
  REQUIRE(files.size() == 1);
  const auto events = test::read_tfevents(files.front());
  REQUIRE(events.size() == 1 + 8 + 2);  // the file version, 8 steps, 2 evaluations
  CHECK(events.front().file_version == "brain.Event:2");
  // Each value is metrics.jsonl's, as a float.
  std::map<std::pair<int64_t, std::string>, double> logged;
  std::ifstream metrics(dir / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record["kind"] == "train") {
      logged[{record["step"].get<int64_t>(), "train/loss"}] = record["loss"].get<double>();
      logged[{record["step"].get<int64_t>(), "train/lr"}] = record["lr"].get<double>();
    } else if (record["kind"] == "eval") {
      logged[{record["step"].get<int64_t>(), "eval/val_loss"}] = record["val_loss"].get<double>();
    }
  }
  REQUIRE(logged.size() == 8 * 2 + 2);
  size_t compared = 0;
  for (size_t i = 1; i < events.size(); ++i) {
    for (const auto& [tag, value] : events[i].scalars) {
      const auto found = logged.find({events[i].step, tag});
      if (found == logged.end()) continue;
      CHECK(value == static_cast<float>(found->second));
      ++compared;
    }
  }
  CHECK(compared == logged.size());
  CHECK(events[1].scalars.count("memory/peak_host_gib") == 1);
  CHECK(events[1].scalars.count("memory/peak_device_gib") == 0);  // none on a CPU
  fs::remove_all(dir);
}

TEST_CASE("bf16 training tracks fp32 and lowers the loss", "[train]") {
  const auto dir = fresh_dir("bf16");
  // Text a model learns in a few steps: synthetic tokens are uniform, with nothing to learn.
  std::string text;
  for (int i = 0; i < 100; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  std::ofstream(dir / "text.txt") << text;
  const std::vector<std::string> common = {"model.dropout=0.0", "train.steps=12", "checkpoint.save_final=false",
                                           "checkpoint.every=0", "optimizer.lr=3.0e-3", "data.format=text",
                                           "data.tokenizer=byte", "data.train=" + (dir / "text.txt").string()};
  auto fp32_overrides = common;
  auto bf16_overrides = common;
  bf16_overrides.push_back("precision.dtype=bf16");
  const auto fp32 = run_training(tiny_config(dir / "fp32", fp32_overrides));
  const auto bf16 = run_training(tiny_config(dir / "bf16", bf16_overrides));
  CHECK(bf16.losses.front() == Approx(fp32.losses.front()).epsilon(5e-3));
  CHECK(bf16.losses.back() == Approx(fp32.losses.back()).epsilon(2e-2));
  for (const auto* run : {&fp32, &bf16}) {
    INFO("first loss " << run->losses.front() << ", last " << run->losses.back());
    CHECK(run->losses.back() < 0.9 * run->losses.front());
  }
  fs::remove_all(dir);
}

TEST_CASE("the peak-FLOPs probe measures the dtype the matmuls run in: fp32, bf16, fp16 on a CPU",
          "[runtime][fp16]") {
  // Whether this LibTorch multiplies fp16 matrices on a CPU at all (Debian's 1.13 does not).
  bool half_matmul = true;
  try {
    (void)torch::mm(torch::ones({2, 2}, torch::kHalf), torch::ones({2, 2}, torch::kHalf));
  } catch (const c10::Error&) {
    half_matmul = false;
  }
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    const GemmRate rate = measure_gemm(dtype, torch::kCPU);
    INFO(c10::toString(dtype) << ": " << rate.flops / 1e9 << " GFLOP/s in " << c10::toString(rate.dtype));
    CHECK(std::isfinite(rate.flops));
    CHECK(rate.flops > 0);
    CHECK(rate.dtype == activation_dtype(dtype, torch::kCPU));
    if (dtype == torch::kHalf && !half_matmul) CHECK(rate.dtype == torch::kFloat);
  }
  const PeakFlops measured = mfu_peak_flops(0, torch::kHalf, torch::kCPU);
  CHECK(measured.source == (half_matmul ? "measured 2048^3 fp16 GEMM" : "measured 2048^3 fp32 GEMM"));
  const PeakFlops configured = mfu_peak_flops(3.0e14, torch::kHalf, torch::kCPU);
  CHECK(configured.flops == 3.0e14);
  CHECK(configured.source == "train.peak_flops");
}

TEST_CASE("a GPU's MFU peak is its datasheet dense bf16 peak where the device name is known", "[runtime]") {
  for (const char* name : {"NVIDIA H100 80GB HBM3", "NVIDIA H200"}) {
    INFO(name);
    const auto peak = datasheet_peak_flops(name);
    REQUIRE(peak);
    CHECK(peak->flops == 989e12);
  }
  CHECK(datasheet_peak_flops("NVIDIA H100 80GB HBM3")->source == "datasheet H100 SXM dense bf16");
  // Lower-clocked boards and other chips: measured instead.
  for (const char* name : {"NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA A100-SXM4-80GB"}) {
    INFO(name);
    CHECK_FALSE(datasheet_peak_flops(name));
  }
}

TEST_CASE("fp16 on a CPU trains 20 steps with the default peak probe", "[train][fp16]") {
  const auto dir = fresh_dir("fp16");
  Config config = tiny_config(dir, {"precision.dtype=fp16", "train.steps=20", "checkpoint.save_final=false",
                                    "checkpoint.every=0", "lr_schedule.decay_steps=20"});
  config.train.peak_flops = 0;  // the default: a GEMM measured at start-up
  const auto summary = run_training(config);
  REQUIRE(summary.losses.size() == 20);
  for (const double loss : summary.losses) CHECK(std::isfinite(loss));
  CHECK(std::isfinite(summary.peak_flops));
  CHECK(summary.peak_flops > 0);
  CHECK_THAT(summary.peak_flops_source, Catch::StartsWith("measured 2048^3"));
  for (const auto& step : summary.steps) CHECK(step.mfu > 0);
  fs::remove_all(dir);
}

TEST_CASE("training on tinyshakespeare drives validation loss well below uniform", "[train][data]") {
  const std::string data = std::string(CR_SHARED_DATA) + "/tinyshakespeare.txt";
  if (!cr::test::shared_data_present({data})) return;
  const auto dir = fresh_dir("shakespeare");
  const auto config = load_config_file(std::string(CR_SOURCE_DIR) + "/configs/shakespeare_char.yaml",
                                       {"data.train=" + data, "train.steps=120", "train.global_batch_size=16",
                                        "train.eval_every=120", "train.eval_batches=8", "runtime.threads=1",
                                        "runtime.run_dir=" + dir.string(),
                                        "runtime.progress_bar=false", "train.peak_flops=1.0e9",
                                        "checkpoint.save_final=false", "checkpoint.every=0"});
  const auto summary = run_training(config);
  REQUIRE(summary.val_losses.size() == 1);
  const double uniform = std::log(512.0);
  CHECK(summary.losses.front() > 0.9 * uniform);
  CHECK(summary.val_losses.back().second < 0.5 * uniform);
  fs::remove_all(dir);
}

TEST_CASE("LibTorch's errors reach the user without their backtrace, with a hint for known causes", "[runtime]") {
  const c10::Error out_of_memory({"allocate", "alloc.cpp", 1}, "CUDA out of memory. Tried to allocate 2.00 GiB");
  CHECK_THAT(describe_exception(out_of_memory),
             Catch::StartsWith("LibTorch: CUDA out of memory. Tried to allocate 2.00 GiB\nhint: the device ran out of "
                               "memory: lower train.micro_batch_size"));
  const c10::Error half({"mm", "mm.cpp", 1}, "\"addmm_impl_cpu_\" not implemented for 'Half'");
  CHECK_THAT(describe_exception(half), Catch::Contains("hint: this device has no float16 kernel"));
  const c10::Error other({"f", "f.cpp", 1}, "shape mismatch");
  CHECK(describe_exception(other) == "LibTorch: shape mismatch");
  CHECK(describe_exception(std::runtime_error("plain")) == "plain");
}

TEST_CASE("bad training inputs fail with a message naming the problem", "[train]") {
  const auto dir = fresh_dir("errors");
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"data.seq_len=200"})),
                    Catch::Contains("data.seq_len 200 exceeds the model's max_seq_len 128"));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"model.preset=gpt3"})), Catch::Contains("unknown preset 'gpt3'"));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"data.format=tokens", "data.train=" + (dir / "none*.bin").string()})),
                    Catch::Contains("no file matches"));
  fs::remove_all(dir);
}
