#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/config/config.h"
#include "core/base/error.h"
#include "tests/temp_dir.h"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using cr::Config;
using cr::ConfigError;

namespace {

Config load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return cr::load_config_text(yaml, "test.yaml", overrides);
}

// A file that passes the cross-key rules, for tests about something else.
const std::string kMinimal = "data:\n  train: a.bin\n";

// The schema keys whose values differ; comparing through the schema names the culprits.
std::vector<std::string> differing_keys(Config a, Config b) {
  std::vector<std::string> paths;
  for (const cr::ConfigKey& key : cr::config_keys()) {
    const bool same = std::visit([&](auto access) { return access(a) == access(b); }, key.field);
    if (!same) paths.push_back(key.path);
  }
  return paths;
}

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("cr_test_config_" + std::to_string(::getpid()) + "_" + name);
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("an empty file gives the struct defaults, data files are checked by the commands that read them") {
  // `plan` and `generate` need no data: an empty data.train is refused when training opens it.
  CHECK(differing_keys(load(""), Config{}).empty());

  Config expected;
  expected.data.train = {"a.bin"};
  for (const std::string& yaml : {std::string(""), std::string("{}")}) {
    const Config config = load(yaml, {"data.train=a.bin"});
    CHECK(differing_keys(config, expected).empty());
    CHECK(config.source == "test.yaml");
  }
  CHECK(differing_keys(load(kMinimal), expected).empty());

  Config synthetic;
  synthetic.data.format = "synthetic";
  CHECK(differing_keys(load("data:\n  format: synthetic\n"), synthetic).empty());
}

TEST_CASE("a full config parses every section") {
  const Config c = load(R"(
model:
  arch: gpt2
  preset: null
  n_layer: 2
  n_head: 4
  d_model: 64
  d_ff: 256
  vocab_size: 512
  max_seq_len: 128
  dropout: 0.1
  init_from: runs/base/checkpoints/step_100
data:
  format: text
  train: [corpus/a.txt, "corpus/b*.txt"]
  val: corpus/val.txt
  val_fraction: 0.1
  seq_len: 64
  tokenizer: gpt2
  tokenizer_dir: tok/gpt2
train:
  micro_batch_size: 8
  global_batch_size: 32
  steps: 50
  seed: 7
  clip_grad_norm: 0.5
  log_every: 5
  eval_every: 0
  eval_batches: 3
  peak_flops: 1.5e12
optimizer:
  name: adam
  lr: 1e-3
  betas: [0.8, 0.99]
  eps: 1.0e-6
  weight_decay: 0
lr_schedule:
  kind: linear
  warmup_steps: 0
  min_lr: 0
  decay_steps: 40
precision:
  dtype: bf16
checkpoint:
  dir: ckpt
  every: 10
  keep: 0
  resume: none
  save_final: false
runtime:
  run_dir: runs/full
  device: cpu
  threads: 2
  progress_bar: no
)");
  CHECK(c.model.arch.value_or("") == "gpt2");
  CHECK_FALSE(c.model.preset);
  CHECK(c.model.n_layer == 2);
  CHECK(c.model.n_head == 4);
  CHECK(c.model.d_model == 64);
  CHECK(c.model.d_ff == 256);
  CHECK(c.model.vocab_size == 512);
  CHECK(c.model.max_seq_len == 128);
  CHECK(c.model.dropout == 0.1);
  CHECK(c.model.init_from == "runs/base/checkpoints/step_100");

  CHECK(c.data.format == "text");
  CHECK(c.data.train == std::vector<std::string>{"corpus/a.txt", "corpus/b*.txt"});
  CHECK(c.data.val == std::vector<std::string>{"corpus/val.txt"});
  CHECK(c.data.val_fraction == 0.1);
  CHECK(c.data.seq_len == 64);
  CHECK(c.data.tokenizer == "gpt2");
  CHECK(c.data.tokenizer_dir == "tok/gpt2");

  CHECK(c.train.micro_batch_size == 8);
  CHECK(c.train.global_batch_size == 32);
  CHECK(c.train.steps == 50);
  CHECK(c.train.seed == 7);
  CHECK(c.train.clip_grad_norm == 0.5);
  CHECK(c.train.log_every == 5);
  CHECK(c.train.eval_every == 0);
  CHECK(c.train.eval_batches == 3);
  CHECK(c.train.peak_flops == 1.5e12);

  CHECK(c.optimizer.name == "adam");
  CHECK(c.optimizer.lr == 1e-3);
  CHECK(c.optimizer.betas == std::vector<double>{0.8, 0.99});
  CHECK(c.optimizer.eps == 1e-6);
  CHECK(c.optimizer.weight_decay == 0.0);

  CHECK(c.lr_schedule.kind == "linear");
  CHECK(c.lr_schedule.warmup_steps == 0);
  CHECK(c.lr_schedule.min_lr == 0.0);
  CHECK(c.lr_schedule.decay_steps == 40);

  CHECK(c.precision.dtype == "bf16");

  CHECK(c.checkpoint.dir == "ckpt");
  CHECK(c.checkpoint.every == 10);
  CHECK(c.checkpoint.keep == 0);
  CHECK(c.checkpoint.resume == "none");
  CHECK_FALSE(c.checkpoint.save_final);

  CHECK(c.runtime.run_dir == "runs/full");
  CHECK(c.runtime.device == "cpu");
  CHECK(c.runtime.threads == 2);
  CHECK_FALSE(c.runtime.progress_bar);
}

TEST_CASE("unknown keys and sections are errors that suggest the closest name") {
  CHECK_THROWS_WITH(load("train:\n  setps: 10\n"),
                    "test.yaml:2:3: unknown key 'train.setps'; did you mean 'train.steps'?");
  CHECK_THROWS_WITH(load("trian:\n  steps: 10\n"),
                    "test.yaml:1:1: unknown section 'trian'; did you mean 'train'?");
  CHECK_THROWS_WITH(load("optimizer:\n  lr: 1e-3\n  beta: [0.9, 0.9]\n"),
                    "test.yaml:3:3: unknown key 'optimizer.beta'; did you mean 'optimizer.betas'?");
}

TEST_CASE("the document structure is checked") {
  CHECK_THROWS_WITH(
      load("- model\n- data\n"),
      StartsWith("test.yaml:1:1: expected a mapping of sections") && Contains("got a list"));
  CHECK_THROWS_WITH(load("train: 5\n"),
                    "test.yaml:1:8: train: expected a mapping of keys, got '5'");
  CHECK_THROWS_WITH(load("train:\n  steps: 1\n  steps: 2\n"),
                    "test.yaml:3:3: duplicate key 'train.steps'");
  CHECK_THROWS_WITH(load("train: {}\ntrain: {}\n"), "test.yaml:2:1: duplicate section 'train'");
  // An empty section is allowed and changes nothing.
  CHECK(load(kMinimal + "train:\n").train.steps == 1000);
}

TEST_CASE("wrong types name the key and the value's line and column") {
  CHECK_THROWS_WITH(load("train:\n  steps: ten\n"),
                    "test.yaml:2:10: train.steps: expected an integer, got 'ten'");
  CHECK_THROWS_WITH(load("train:\n  steps: 1.5\n"),
                    "test.yaml:2:10: train.steps: expected an integer, got '1.5'");
  CHECK_THROWS_WITH(load("train:\n  steps:\n"),
                    "test.yaml:2:3: train.steps: expected an integer, got null");
  CHECK_THROWS_WITH(load("optimizer:\n    lr: fast\n"),
                    "test.yaml:2:9: optimizer.lr: expected a number, got 'fast'");
  CHECK_THROWS_WITH(load("optimizer:\n  lr: .inf\n"),
                    "test.yaml:2:7: optimizer.lr: expected a finite number, got '.inf'");
  CHECK_THROWS_WITH(load("checkpoint:\n  save_final: maybe\n"),
                    "test.yaml:2:15: checkpoint.save_final: expected true or false, got 'maybe'");
  CHECK_THROWS_WITH(load("runtime:\n  run_dir: [a, b]\n"),
                    "test.yaml:2:12: runtime.run_dir: expected a string, got a list");
  CHECK_THROWS_WITH(load("data:\n  train: {a: b}\n"),
                    "test.yaml:2:10: data.train: expected a string or a list of strings, got a "
                    "mapping");
  CHECK_THROWS_WITH(load("optimizer:\n  betas: 0.9\n"),
                    "test.yaml:2:10: optimizer.betas: expected a list of numbers, got '0.9'");
  CHECK_THROWS_WITH(load("optimizer:\n  betas: [0.9, x]\n"),
                    "test.yaml:2:16: optimizer.betas[1]: expected a number, got 'x'");
  CHECK_THROWS_WITH(load("model:\n  n_layer: many\n"),
                    "test.yaml:2:12: model.n_layer: expected an integer, got 'many'");
}

TEST_CASE("values out of range are rejected") {
  CHECK_THROWS_WITH(load("train:\n  steps: 0\n"),
                    "test.yaml:2:10: train.steps: must be >= 1, got 0");
  CHECK_THROWS_WITH(load("train:\n  eval_every: -1\n"),
                    "test.yaml:2:15: train.eval_every: must be >= 0, got -1");
  CHECK_THROWS_WITH(load("optimizer:\n  lr: 0\n"),
                    "test.yaml:2:7: optimizer.lr: must be > 0, got 0");
  CHECK_THROWS_WITH(load("model:\n  dropout: 1\n"),
                    "test.yaml:2:12: model.dropout: must be in [0, 1), got 1");
  CHECK_THROWS_WITH(load("model:\n  d_model: 0\n"),
                    "test.yaml:2:12: model.d_model: must be in [1, 1048576], got 0");
  CHECK_THROWS_WITH(load("data:\n  val_fraction: 0.7\n"),
                    "test.yaml:2:17: data.val_fraction: must be in [0, 0.5], got 0.7");
  CHECK_THROWS_WITH(load("optimizer:\n  betas: [0.9, 1.0]\n"),
                    "test.yaml:2:16: optimizer.betas[1]: must be in [0, 1), got 1");
  CHECK_THROWS_WITH(load("optimizer:\n  betas: [-0.1, 0.9]\n"),
                    "test.yaml:2:11: optimizer.betas[0]: must be in [0, 1), got -0.1");
  CHECK_THROWS_WITH(load("optimizer:\n  betas: [0.9, 0.95, 0.99]\n"),
                    "test.yaml:2:10: optimizer.betas: must have 2 items, got 3");
  CHECK_THROWS_WITH(load("runtime:\n  run_dir: ''\n"),
                    "test.yaml:2:12: runtime.run_dir: must not be empty");
  CHECK_THROWS_WITH(load("data:\n  train: [a.bin, '']\n"),
                    "test.yaml:2:18: data.train[1]: must not be empty");
}

TEST_CASE("numbers beyond any real model or job are refused at load, naming the key", "[config][bounds]") {
  // Regression cases of the config fuzzing campaign: each used to hang, wrap in a cast to int,
  // overflow a product or reach the allocator.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.n_layer=2147483648", "model.n_layer: must be in [1, 4096], got 2147483648"},
      {"model.n_layer=9223372036854775807", "model.n_layer: must be in [1, 4096], got 9223372036854775807"},
      {"model.n_head=1000000", "model.n_head: must be in [1, 4096], got 1000000"},
      {"model.d_model=2147483648", "model.d_model: must be in [1, 1048576], got 2147483648"},
      {"model.d_model=9223372036854775807", "model.d_model: must be in [1, 1048576], got 9223372036854775807"},
      {"model.d_ff=9223372036854775807", "model.d_ff: must be in [1, 4194304], got 9223372036854775807"},
      {"model.vocab_size=2147483648", "model.vocab_size: must be in [1, 16777216], got 2147483648"},
      {"model.max_seq_len=2147483648", "model.max_seq_len: must be in [1, 16777216], got 2147483648"},
      {"data.seq_len=2147483648", "data.seq_len: must be in [1, 16777216], got 2147483648"},
      {"train.micro_batch_size=2147483648", "train.micro_batch_size: must be in [1, 16777216], got 2147483648"},
      {"train.global_batch_size=2147483648", "train.global_batch_size: must be in [0, 16777216], got 2147483648"},
      {"train.eval_batches=9223372036854775807",
       "train.eval_batches: must be in [1, 16777216], got 9223372036854775807"},
      {"parallel.data=2147483648", "parallel.data: must be in [0, 1048576], got 2147483648"},
      {"parallel.tensor=4294967297", "parallel.tensor: must be in [1, 1048576], got 4294967297"},
      {"parallel.pipeline=9223372036854775807", "parallel.pipeline: must be in [1, 1048576], got 9223372036854775807"},
      {"parallel.bucket_mb=1e9", "parallel.bucket_mb: must be in (0, 65536], got 1000000000"},
      {"runtime.threads=2147483648", "runtime.threads: must be in [0, 4096], got 2147483648"},
      {"runtime.collective_timeout_s=1e12", "runtime.collective_timeout_s: must be in (0, 604800], got 1000000000000"},
  };
  for (const auto& [override, message] : cases) {
    INFO(override);
    CHECK_THROWS_WITH(load(kMinimal, {override}), "--set " + message);
  }
  // The largest accepted values still load.
  CHECK_NOTHROW(load(kMinimal, {"model.n_layer=4096", "model.d_model=1048576", "parallel.tensor=1048576"}));
}

TEST_CASE("enum keys accept only their choices") {
  CHECK_THROWS_WITH(load("precision:\n  dtype: fp8\n"),
                    "test.yaml:2:10: precision.dtype: 'fp8' is not one of fp32, bf16, fp16");
  CHECK_THROWS_WITH(load("data:\n  format: csv\n"),
                    "test.yaml:2:11: data.format: 'csv' is not one of tokens, text, synthetic");
  CHECK_THROWS_WITH(load("runtime:\n  device: gpu\n"),
                    "test.yaml:2:11: runtime.device: 'gpu' is not one of auto, cpu, cuda");
  // Presets are checked by the model zoo, not here.
  CHECK(load(kMinimal + "model:\n  preset: my-own\n").model.preset == "my-own");
}

TEST_CASE("YAML syntax errors and missing files") {
  CHECK_THROWS_WITH(load("train:\n  steps: [1, 2\n"),
                    StartsWith("test.yaml:3:1: ") && Contains("end of sequence flow not found"));
  CHECK_THROWS_WITH(load("train:\n  steps: 1\n bad: 2\n"), StartsWith("test.yaml:3:"));
  CHECK_THROWS_AS(load("train: [\n"), ConfigError);

  CHECK_THROWS_WITH(cr::load_config_file("/nonexistent/run.yaml"),
                    "config file '/nonexistent/run.yaml': not found");
  const std::filesystem::path directory = temp_path("dir");
  std::filesystem::create_directories(directory);
  CHECK_THROWS_WITH(cr::load_config_file(directory.string()),
                    "config file '" + directory.string() + "': is a directory");
  std::filesystem::remove(directory);
  // Regression: a device was read for ever.
  CHECK_THROWS_WITH(cr::load_config_file("/dev/zero"), "config file '/dev/zero': not a regular file");
  const std::filesystem::path huge = temp_path("huge.yaml");
  std::ofstream(huge).close();
  std::filesystem::resize_file(huge, (1 << 24) + 1);
  CHECK_THROWS_WITH(cr::load_config_file(huge.string()),
                    "config file '" + huge.string() + "': 16777217 bytes; a config is at most 16 MiB");
  std::filesystem::remove(huge);
}

TEST_CASE("a config is one YAML document with bare numbers and closed quotes", "[config][yaml]") {
  // Regression: a second document was ignored.
  CHECK_THROWS_WITH(load(kMinimal + "---\ntrain:\n  steps: 5\n"),
                    "test.yaml:4: a second YAML document starts here (after a '---' line); a config is one document");
  CHECK(load("---\n" + kMinimal).data.train == std::vector<std::string>{"a.bin"});
  // Regression: tags and quotes made strings count as numbers.
  CHECK_THROWS_WITH(load(kMinimal + "train:\n  steps: !!str 5\n"),
                    "test.yaml:4:10: train.steps: expected an integer, got '5' tagged !!str");
  CHECK_THROWS_WITH(load(kMinimal + "train:\n  steps: \"5\"\n"),
                    "test.yaml:4:10: train.steps: expected an integer, got the quoted string '5'");
  CHECK_THROWS_WITH(load(kMinimal + "optimizer:\n  lr: '0.1'\n"),
                    "test.yaml:4:7: optimizer.lr: expected a number, got the quoted string '0.1'");
  CHECK_THROWS_WITH(load(kMinimal + "runtime:\n  progress_bar: \"true\"\n"),
                    "test.yaml:4:17: runtime.progress_bar: expected true or false, got the quoted string 'true'");
  CHECK_THROWS_WITH(load(kMinimal, {"train.steps=\"5\""}),
                    "--set train.steps: expected an integer, got the quoted string '5'");
  CHECK(load(kMinimal + "runtime:\n  run_dir: !!str 5\n").runtime.run_dir == "5");
  CHECK(load(kMinimal + "runtime:\n  run_dir: \"it's \\\"here\\\"\"\n").runtime.run_dir == "it's \"here\"");
  CHECK(load(kMinimal + "runtime:\n  run_dir: 'it''s'\n").runtime.run_dir == "it's");
  // Regression: an unclosed quote swallowed the sections below it into one value.
  CHECK_THROWS_WITH(load(kMinimal + "parallel:\n  order: 'data,pipeline,tensor\n  bucket_mb: 25.0\nzero:\n  stage: 0\n"),
                    "test.yaml:4:10: parallel.order: the value's opening ' quote is not closed on its line");
  // Regression: with a quoted value further down, the parser reported that later line.
  CHECK_THROWS_WITH(load(kMinimal + "train:\n  steps: \"abc\nparallel:\n  order: \"data,pipeline,sequence,tensor\"\n"),
                    "test.yaml:4:10: train.steps: the value's opening \" quote is not closed on its line");
  CHECK_THROWS_WITH(load(kMinimal + "runtime:\n  run_dir: \"r\u00e9sum\u00e9\\\"\n  device: cpu\n"),
                    StartsWith("test.yaml:4:12: runtime.run_dir: the value's opening \" quote is not closed"));
}

TEST_CASE("quoted values are shortened in messages", "[config][bounds]") {
  const std::string huge(20 << 20, 'a');
  std::string message;
  try {
    load(kMinimal + "precision:\n  dtype: " + huge + "\n");
  } catch (const ConfigError& e) {
    message = e.what();
  }
  CHECK_THAT(message, StartsWith("test.yaml:4:10: precision.dtype: 'aaa") && Contains("...(20971520 bytes)..."));
  CHECK(message.size() < 400);
  message.clear();
  try {
    load(kMinimal, {"train." + huge + "=1"});
  } catch (const ConfigError& e) {
    message = e.what();
  }
  CHECK_THAT(message, StartsWith("--set train.aaa") && Contains("(20971526 bytes)") &&
                          Contains("did you mean 'train."));
  CHECK(message.size() < 600);
}

TEST_CASE("load_config_file reads the file, applies overrides and records the source") {
  const std::filesystem::path path = temp_path("run.yaml");
  std::ofstream(path) << "data:\n  train: a.bin\ntrain:\n  steps: 10\n";
  const Config config = cr::load_config_file(path.string(), {"train.steps=20"});
  CHECK(config.train.steps == 20);
  CHECK(config.source == path.string());

  std::ofstream(path, std::ios::trunc) << "";
  CHECK(cr::load_config_file(path.string(), {"data.format=synthetic"}).data.format == "synthetic");

  std::ofstream(path) << "train:\n  steps: ten\n";
  CHECK_THROWS_WITH(cr::load_config_file(path.string()),
                    path.string() + ":2:10: train.steps: expected an integer, got 'ten'");
  std::filesystem::remove(path);
}

TEST_CASE("relative paths resolve against the config file's directory, --set ones against the working directory") {
  cr::test::TempDir dir;
  const std::filesystem::path sub = dir.path() / "configs";
  std::filesystem::create_directories(sub);
  const std::string path = (sub / "run.yaml").string();
  std::ofstream(path) << "model:\n  init_from: ../weights\n"
                         "data:\n  train: [shards/a_*.bin, /abs/b.bin]\n  tokenizer_dir: ./tok\n"
                         "checkpoint:\n  resume: auto\nruntime:\n  run_dir: ../runs/x\n";
  const auto cwd = std::filesystem::current_path();
  const Config config = cr::load_config_file(path, {"data.val=v.bin", "checkpoint.dir=ck/../ck2"});
  const auto in_dir = [&](const std::string& name) { return (dir.path() / name).lexically_normal().string(); };
  CHECK(*config.model.init_from == in_dir("weights"));
  CHECK(config.data.train == std::vector<std::string>{in_dir("configs/shards/a_*.bin"), "/abs/b.bin"});
  CHECK(*config.data.tokenizer_dir == in_dir("configs/tok"));
  CHECK(config.runtime.run_dir == in_dir("runs/x"));
  CHECK(config.checkpoint.resume == "auto");  // a keyword, not a path
  CHECK(config.data.val == std::vector<std::string>{(cwd / "v.bin").string()});
  CHECK(*config.checkpoint.dir == (cwd / "ck2").string());
  CHECK(cr::load_config_file(path, {"checkpoint.resume=none"}).checkpoint.resume == "none");
  CHECK(cr::load_config_file(path, {"checkpoint.resume=step_1"}).checkpoint.resume == (cwd / "step_1").string());

  // The resolved dump is absolute: it loads to the same paths from anywhere.
  const std::string dump = cr::dump_config(config);
  std::ofstream(dir.file("config.yaml")) << dump;
  CHECK(cr::dump_config(cr::load_config_file(dir.file("config.yaml"))) == dump);
  // Text without a directory keeps its paths as written.
  CHECK(load("data:\n  train: a.bin\n").data.train == std::vector<std::string>{"a.bin"});
}

TEST_CASE("cross-key rules name both keys") {
  CHECK_THROWS_WITH(load(kMinimal + "train:\n  micro_batch_size: 4\n  global_batch_size: 10\n"),
                    "test.yaml: train.global_batch_size (10) must be a multiple of "
                    "train.micro_batch_size (4)");
  CHECK(load(kMinimal + "train:\n  micro_batch_size: 4\n  global_batch_size: 12\n")
            .train.global_batch_size == 12);

  CHECK(load("data:\n  format: synthetic\n").data.train.empty());

  CHECK_THROWS_WITH(load("data:\n  format: text\n  train: a.txt\n  tokenizer: gpt2\n"),
                    "test.yaml: data.tokenizer gpt2 needs data.tokenizer_dir (data.format is "
                    "text)");
  CHECK(load("data:\n  format: text\n  train: a.txt\n  tokenizer: byte\n").data.tokenizer ==
        "byte");

  CHECK_THROWS_WITH(load(kMinimal + "optimizer:\n  lr: 1e-4\nlr_schedule:\n  min_lr: 1e-3\n"),
                    "test.yaml: lr_schedule.min_lr (0.001) must be <= optimizer.lr (0.0001)");

  CHECK_THROWS_WITH(load(kMinimal + "model:\n  preset: null\n  n_layer: 2\n  d_model: 64\n"),
                    "test.yaml: model.preset is null, so model.n_head, model.vocab_size, "
                    "model.max_seq_len must be set");
  CHECK_FALSE(load(kMinimal + "model:\n  preset: null\n  n_layer: 2\n  n_head: 2\n  d_model: "
                              "64\n  vocab_size: 512\n  max_seq_len: 32\n")
                  .model.preset);

  for (const std::string resume : {"auto", "none", "runs/x/checkpoints/step_10"}) {
    CHECK(load(kMinimal + "checkpoint:\n  resume: " + resume + "\n").checkpoint.resume == resume);
  }
}

TEST_CASE("parallel.pipeline takes a bare size or a mapping, checked against its schedule", "[config][pipeline]") {
  CHECK(load(kMinimal + "parallel:\n  pipeline: 4\n").parallel.pipeline.size == 4);
  CHECK(load(kMinimal, {"parallel.pipeline=2"}).parallel.pipeline.size == 2);
  const Config c = load(kMinimal + "parallel:\n  pipeline: {size: 2, schedule: interleaved, chunks: 3, microbatches: 8, "
                                   "layers_per_stage: [1, 2, 1, 2, 1, 2]}\n");
  CHECK(c.parallel.pipeline.schedule == "interleaved");
  CHECK(c.parallel.pipeline.chunks == 3);
  CHECK(c.parallel.pipeline.microbatches == 8);
  CHECK(c.parallel.pipeline.layers_per_stage == std::vector<int64_t>{1, 2, 1, 2, 1, 2});
  CHECK(load(kMinimal, {"parallel.pipeline.layers_per_stage=null"}).parallel.pipeline.layers_per_stage.empty());

  CHECK_THROWS_WITH(load(kMinimal + "parallel:\n  pipeline: two\n"),
                    "test.yaml:4:13: parallel.pipeline: expected an integer, got 'two'");
  CHECK_THROWS_WITH(load(kMinimal, {"parallel.pipeline.schedule=pipedream"}),
                    "--set parallel.pipeline.schedule: 'pipedream' is not one of gpipe, 1f1b, interleaved, zero_bubble");
  CHECK_THROWS_WITH(load(kMinimal, {"parallel.pipeline.layers_per_stage=[2, 0]"}),
                    "--set parallel.pipeline.layers_per_stage[1]: must be >= 1, got 0");
  CHECK_THROWS_WITH(load(kMinimal, {"parallel.pipeline.chunks=2"}),
                    "test.yaml: parallel.pipeline.chunks 2 needs parallel.pipeline.schedule interleaved (it is 1f1b)");
  CHECK_THROWS_WITH(load(kMinimal, {"parallel.pipeline.schedule=interleaved"}),
                    "test.yaml: parallel.pipeline.schedule interleaved needs parallel.pipeline.chunks >= 2, got 1");
  CHECK_THROWS_WITH(load(kMinimal, {"parallel.pipeline.size=2", "parallel.pipeline.layers_per_stage=[1, 2, 3]"}),
                    "test.yaml: parallel.pipeline.layers_per_stage has 3 entries; parallel.pipeline.size 2 x chunks 1 "
                    "needs 2");
}

TEST_CASE("validate_config checks a config built in code") {
  Config config;
  config.source = "built";
  config.data.format = "synthetic";
  CHECK_NOTHROW(cr::validate_config(config));
  config.optimizer.betas = {0.9, 1.5};
  CHECK_THROWS_WITH(cr::validate_config(config),
                    "built: optimizer.betas[1]: must be in [0, 1), got 1.5");
  config.optimizer.betas = {0.9};
  CHECK_THROWS_WITH(cr::validate_config(config),
                    "built: optimizer.betas: must have 2 items, got 1");
}

TEST_CASE("overrides given with --set go through the same parsing and checks") {
  const Config c =
      load("train:\n  steps: 10\n",
           {"train.steps=500", "optimizer.betas=[0.9,0.99]", "model.preset=null", "model.n_layer=2",
            "model.n_head=2", "model.d_model=32", "model.vocab_size=512", "model.max_seq_len=64",
            "data.train=a.bin", " runtime.run_dir = runs/x", "checkpoint.dir=ckpt=1"});
  CHECK(c.train.steps == 500);
  CHECK(c.optimizer.betas == std::vector<double>{0.9, 0.99});
  CHECK_FALSE(c.model.preset);
  CHECK(c.model.max_seq_len == 64);
  CHECK(c.data.train == std::vector<std::string>{"a.bin"});
  CHECK(c.runtime.run_dir == "runs/x");
  CHECK(c.checkpoint.dir == "ckpt=1");

  CHECK(load(kMinimal, {"data.train=[a.bin, b.bin]"}).data.train ==
        std::vector<std::string>{"a.bin", "b.bin"});
  // A later override wins over an earlier one and over the file.
  CHECK(load(kMinimal + "train:\n  seed: 1\n", {"train.seed=2", "train.seed=3"}).train.seed == 3);

  CHECK_THROWS_WITH(load(kMinimal, {"train.steps"}),
                    "--set 'train.steps': expected key.path=value, e.g. train.steps=100");
  CHECK_THROWS_WITH(load(kMinimal, {"=5"}), StartsWith("--set '=5': expected key.path=value"));
  CHECK_THROWS_WITH(load(kMinimal, {"train.setps=5"}),
                    "--set train.setps: unknown key 'train.setps'; did you mean 'train.steps'?");
  CHECK_THROWS_WITH(load(kMinimal, {"trian.steps=5"}),
                    "--set trian.steps: unknown key 'trian.steps'; did you mean 'train.steps'?");
  CHECK_THROWS_WITH(load(kMinimal, {"train.steps=ten"}),
                    "--set train.steps: expected an integer, got 'ten'");
  CHECK_THROWS_WITH(load(kMinimal, {"train.steps="}),
                    "--set train.steps: expected an integer, got null");
  CHECK_THROWS_WITH(load(kMinimal, {"train.steps=0"}), "--set train.steps: must be >= 1, got 0");
  CHECK_THROWS_WITH(load(kMinimal, {"precision.dtype=fp8"}),
                    "--set precision.dtype: 'fp8' is not one of fp32, bf16, fp16");
  CHECK_THROWS_WITH(load(kMinimal, {"optimizer.betas=[0.9, 2]"}),
                    "--set optimizer.betas[1]: must be in [0, 1), got 2");
  CHECK_THROWS_WITH(load(kMinimal, {"optimizer.betas=[0.9"}),
                    StartsWith("--set optimizer.betas: cannot read '[0.9' as YAML: "));
  // Cross-key rules see the overridden values.
  CHECK_THROWS_WITH(load(kMinimal, {"train.global_batch_size=6"}),
                    Contains("train.global_batch_size (6) must be a multiple"));
}

TEST_CASE("the dump lists every key in schema order and loads back to an equal config") {
  Config defaults;
  defaults.data.train = {"a.bin"};
  const std::string dump = cr::dump_config(defaults);
  CHECK_THAT(dump, StartsWith("model:\n  arch: null\n  preset: gpt2\n  n_layer: null\n"));
  CHECK_THAT(dump, Contains("\ndata:\n  format: tokens\n  train: [a.bin]\n  val: []\n"));
  CHECK_THAT(dump, Contains("  dropout: 0.0\n"));
  CHECK_THAT(dump, Contains("  lr: 0.0006\n  betas: [0.9, 0.95]\n  eps: 1e-08\n"));
  size_t key_lines = 0;
  std::istringstream lines(dump);
  for (std::string line; std::getline(lines, line);) key_lines += line.rfind("  ", 0) == 0;
  CHECK(key_lines == cr::config_keys().size());
  CHECK(differing_keys(load(dump), defaults).empty());

  Config custom;
  custom.model.preset.reset();
  custom.model.n_layer = 3;
  custom.model.n_head = 3;
  custom.model.d_model = 48;
  custom.model.d_ff = 100;
  custom.model.vocab_size = 300;
  custom.model.max_seq_len = 40;
  custom.model.dropout = 0.25;
  custom.model.init_from = "null";
  custom.data.format = "text";
  custom.data.train = {"with space.txt", "a: b", "quote\"back\\slash", "-dash", "*.txt", "tab\t"};
  custom.data.val = {"[x]", "#hash"};
  custom.data.val_fraction = 0.0;
  custom.data.seq_len = 17;
  custom.data.tokenizer = "gpt2";
  custom.data.tokenizer_dir = "~";
  custom.train.micro_batch_size = 3;
  custom.train.global_batch_size = 9;
  custom.train.steps = 123456789012;
  custom.train.seed = 0;
  custom.train.clip_grad_norm = 0.0;
  custom.train.peak_flops = 3.12e14;
  custom.optimizer.name = "adam";
  custom.optimizer.lr = 0.1 + 0.2;
  custom.optimizer.betas = {0.0, 1.0 / 3.0};
  custom.optimizer.eps = 1e-300;
  custom.lr_schedule.kind = "constant";
  custom.lr_schedule.min_lr = 1e-7;
  custom.precision.dtype = "bf16";
  custom.checkpoint.dir = "true";
  custom.checkpoint.resume = "Null";
  custom.checkpoint.save_final = false;
  custom.runtime.run_dir = "123";
  custom.runtime.device = "cuda";
  custom.runtime.progress_bar = false;
  custom.parallel.pipeline = {3, "interleaved", 6, {1, 1, 1, 2, 2, 2}, 2};
  REQUIRE(differing_keys(custom, Config{}).size() >= 35);
  const Config reloaded = load(cr::dump_config(custom));
  CHECK(differing_keys(reloaded, custom).empty());
  CHECK(cr::dump_config(reloaded) == cr::dump_config(custom));
}

TEST_CASE("the schema tables are consistent") {
  std::vector<std::string> section_order;
  std::set<std::string> paths;
  for (const cr::ConfigKey& key : cr::config_keys()) {
    const std::string section = key.path.substr(0, key.path.find('.'));
    if (section_order.empty() || section_order.back() != section) section_order.push_back(section);
    CHECK(paths.insert(key.path).second);
    CHECK_FALSE(key.meaning.empty());
  }
  std::vector<std::string> sections;
  for (const cr::ConfigSection& section : cr::config_sections()) sections.push_back(section.name);
  CHECK(section_order == sections);  // contiguous, in section order, none empty
  CHECK(paths.size() == 95);         // every field of the structs in config.h
}

TEST_CASE("docs/config.md is generated from the schema") {
  const std::string markdown = cr::config_reference_markdown();
  CHECK_THAT(markdown, StartsWith("# Configuration reference\n"));
  CHECK_THAT(markdown, Contains("| `train.steps` | integer >= 1 | `1000` | optimizer steps to "
                                "run |"));
  CHECK_THAT(markdown, Contains("| `optimizer.betas` | list of 2 numbers, each in [0, 1) | "
                                "`[0.9, 0.95]` |"));
  CHECK_THAT(markdown, Contains("| `model.n_layer` | integer in [1, 4096] or null | `null` |"));
  CHECK_THAT(markdown, Contains("| `precision.dtype` | one of `fp32`, `bf16`, `fp16` | `fp32` |"));

  const std::filesystem::path path = std::filesystem::path(CR_SOURCE_DIR) / "docs" / "config.md";
  const char* update = std::getenv("CR_UPDATE_DOCS");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(path, std::ios::binary) << markdown;
  }
  if (read_text(path) != markdown) FAIL("docs/config.md is out of date; run with CR_UPDATE_DOCS=1");
}
