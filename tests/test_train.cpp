// End-to-end training: loss falls on real text, resume is bitwise exact, corrupted checkpoints
// are refused, run directories hold what they promise.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/checkpoint_store.h"
#include "core/config.h"
#include "core/error.h"
#include "core/trainer.h"

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

bool shared_data_present() {
  if (fs::exists(fs::path(CR_SHARED_DATA) / "tinyshakespeare.txt")) return true;
  WARN("skipped: " CR_SHARED_DATA "/tinyshakespeare.txt is not present");
  return false;
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
  // metrics.jsonl continues across the restart: one record per step.
  std::ifstream metrics(dir / "split" / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line); ++lines) {
    CHECK(nlohmann::json::parse(line)["step"].get<int>() == lines + 1);
  }
  CHECK(lines == 8);
  fs::remove_all(dir);
}

TEST_CASE("a corrupted or truncated checkpoint is refused with the file named", "[train]") {
  const auto dir = fresh_dir("corrupt");
  run_training(tiny_config(dir, {"train.steps=4", "checkpoint.every=2"}));
  const auto latest = latest_checkpoint((dir / "checkpoints").string());
  REQUIRE(latest);
  const auto model_file = fs::path(*latest) / "model.safetensors";
  {
    std::fstream file(model_file, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-5, std::ios::end);
    file.put('\x5a');
  }
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=6"})),
                    Catch::Contains("model.safetensors") && Catch::Contains("crc32"));
  fs::resize_file(model_file, 100);
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"train.steps=6"})), Catch::Contains("truncated"));
  // The older checkpoint is untouched and can still be resumed explicitly.
  const auto older = (dir / "checkpoints" / checkpoint_dir_name(2)).string();
  CHECK_NOTHROW(verify_checkpoint(older));
  const auto resumed = run_training(tiny_config(dir, {"train.steps=3", "checkpoint.resume=" + older}));
  CHECK(resumed.first_step == 2);
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
  for (const char* key : {"loss", "lr", "grad_norm", "tokens_per_s", "flops_per_s", "mfu", "peak_host_bytes"}) {
    CHECK(record.contains(key));
  }
  fs::remove_all(dir);
}

TEST_CASE("bf16 training tracks fp32 and lowers the loss", "[train]") {
  const auto dir = fresh_dir("bf16");
  const std::vector<std::string> common = {"model.dropout=0.0", "train.steps=12", "checkpoint.save_final=false",
                                           "checkpoint.every=0", "optimizer.lr=3.0e-3"};
  auto fp32_overrides = common;
  auto bf16_overrides = common;
  bf16_overrides.push_back("precision.dtype=bf16");
  const auto fp32 = run_training(tiny_config(dir / "fp32", fp32_overrides));
  const auto bf16 = run_training(tiny_config(dir / "bf16", bf16_overrides));
  CHECK(bf16.losses.front() == Approx(fp32.losses.front()).epsilon(5e-3));
  CHECK(bf16.losses.back() == Approx(fp32.losses.back()).epsilon(2e-2));
  fs::remove_all(dir);
}

TEST_CASE("training on tinyshakespeare drives validation loss well below uniform", "[train][data]") {
  if (!shared_data_present()) return;
  const auto dir = fresh_dir("shakespeare");
  const std::string data = std::string(CR_SHARED_DATA) + "/tinyshakespeare.txt";
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

TEST_CASE("bad training inputs fail with a message naming the problem", "[train]") {
  const auto dir = fresh_dir("errors");
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"data.seq_len=200"})),
                    Catch::Contains("data.seq_len 200 exceeds the model's max_seq_len 128"));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"model.preset=gpt3"})), Catch::Contains("unknown preset 'gpt3'"));
  CHECK_THROWS_WITH(run_training(tiny_config(dir, {"data.format=tokens", "data.train=" + (dir / "none*.bin").string()})),
                    Catch::Contains("no file matches"));
  fs::remove_all(dir);
}
