// convert-config: Colossal-AI's Python-literal configs read as JSON, and DeepSpeed and Colossal-AI
// configs translated into ours, checked value by value and by the keys named as not mapped.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <fmt/ranges.h>

#include "core/config/config.h"
#include "core/config/foreign_config.h"
#include "core/config/python_literal.h"

using cr::Config;

TEST_CASE("Python literals: Colossal-AI's config subset reads as JSON", "[config][convert]") {
  const auto values = cr::parse_python_literals(R"(from colossalai.amp import AMP_TYPE
import torch
# comment
a = 2 ** 5          # 32
b = -1.5e-3
c = dict(x=1, y='two', z=[1, (2, 3)], w={'k': None})
d = (
    True,
)
e = AMP_TYPE.NAIVE
f = TensorShardStrategy(1, key="v")
cudnn_benchmark = False,
g = 3 * 4 - 10 / 4
)",
                                            "c.py");
  CHECK(values["a"] == 32);
  CHECK(values["b"].get<double>() == -1.5e-3);
  CHECK(values["c"]["y"] == "two");
  CHECK(values["c"]["z"].dump() == "[1,[2,3]]");
  CHECK(values["c"]["w"]["k"].is_null());
  CHECK(values["d"].dump() == "[true]");
  CHECK(values["e"]["$name"] == "AMP_TYPE.NAIVE");
  CHECK(values["f"]["$call"] == "TensorShardStrategy");
  CHECK(values["f"]["kwargs"]["key"] == "v");
  CHECK(values["cudnn_benchmark"].dump() == "[false]");
  CHECK(values["g"].get<double>() == 9.5);
  CHECK_THROWS_WITH(cr::parse_python_literals("a = 1\nprint(a)\n", "c.py"),
                    Catch::Contains("c.py:2: `print` is not an assignment"));
  CHECK_THROWS_WITH(cr::parse_python_literals("a = dict(\n  x=1,\n", "c.py"), Catch::Contains("c.py:3: expected"));
  CHECK_THROWS_WITH(cr::parse_python_literals("a = 'open\n", "c.py"), Catch::Contains("c.py:1: unterminated string"));
  CHECK_THROWS_WITH(cr::parse_python_literals("a = 'x' * 2\n", "c.py"), Catch::Contains("arithmetic on something"));
}

TEST_CASE("convert-config: a DeepSpeed JSON becomes our config, key by key", "[config][convert]") {
  // The shape of DeepSpeed's ZeRO tutorial configs.
  const std::string deepspeed = R"({
    "train_micro_batch_size_per_gpu": 16,
    "gradient_accumulation_steps": 4,
    "gradient_clipping": 1.0,
    "steps_per_print": 100,
    "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}},
    "scheduler": {"type": "WarmupCosineLR",
                  "params": {"total_num_steps": 10000, "warmup_num_steps": 500, "cos_min_ratio": 0.1}},
    "bf16": {"enabled": true},
    "zero_optimization": {"stage": 2, "overlap_comm": true, "contiguous_gradients": true,
                          "reduce_bucket_size": 5e8, "offload_optimizer": {"device": "cpu"}},
    "wall_clock_breakdown": false
  })";
  const cr::ConvertedConfig converted = cr::convert_deepspeed_config(deepspeed, "ds.json");
  const Config config = cr::load_config_text(converted.yaml, "converted");
  CHECK(config.train.micro_batch_size == 16);
  CHECK(config.train.clip_grad_norm == 1.0);
  CHECK(config.train.log_every == 100);
  CHECK_FALSE(config.train.time_breakdown);
  CHECK(config.optimizer.name == "adamw");
  CHECK(config.optimizer.lr == 3e-4);
  CHECK(config.optimizer.betas == std::vector<double>{0.9, 0.95});
  CHECK(config.optimizer.weight_decay == 0.1);
  CHECK(config.lr_schedule.kind == "cosine");
  CHECK(config.lr_schedule.warmup_steps == 500);
  CHECK(config.lr_schedule.decay_steps == 10000);
  CHECK(config.lr_schedule.min_lr == Approx(3e-5));
  CHECK(config.precision.dtype == "bf16");
  CHECK(config.zero.stage == 2);
  CHECK(config.zero.overlap_communication);
  CHECK(config.parallel.bucket_mb == 1907.0);  // 5e8 fp32 elements
  const std::string unmapped = fmt::format("{}", fmt::join(converted.unmapped, "\n"));
  CHECK_THAT(unmapped, Catch::Contains("gradient_accumulation_steps: the accumulation steps follow from"));
  CHECK_THAT(unmapped, Catch::Contains("zero_optimization.offload_optimizer: offloading to CPU or NVMe"));
  CHECK_THAT(unmapped, Catch::Contains("zero_optimization.contiguous_gradients: a tuning knob"));
  CHECK(converted.unmapped.size() == 3);
  // The file says the same, as comments after the keys.
  CHECK_THAT(converted.yaml, Catch::Contains("# not mapped: zero_optimization.offload_optimizer"));

  // The first example of DeepSpeed's config reference, with its early `"zero_optimization": true`.
  const cr::ConvertedConfig minimal = cr::convert_deepspeed_config(R"({
    "train_batch_size": 8, "gradient_accumulation_steps": 1,
    "optimizer": {"type": "Adam", "params": {"lr": 0.00015}},
    "fp16": {"enabled": true}, "zero_optimization": true})",
                                                           "ds.json");
  const Config small = cr::load_config_text(minimal.yaml, "converted");
  CHECK(small.train.global_batch_size == 8);
  CHECK(small.optimizer.name == "adamw");  // DeepSpeed's Adam decouples weight decay by default
  CHECK(small.optimizer.lr == 0.00015);
  CHECK(small.precision.dtype == "fp16");
  CHECK(small.zero.stage == 1);
  CHECK(minimal.unmapped.empty());
  CHECK_THROWS_WITH(cr::convert_deepspeed_config("[1, 2]", "ds.json"), Catch::Contains("ds.json: not a JSON object"));
  CHECK_THROWS_WITH(cr::convert_deepspeed_config(R"({"optimizer": 3})", "ds.json"),
                    Catch::Contains("ds.json: optimizer must be an object, got 3"));
  // Hugging Face Trainer configs leave values "auto"; each is named, the rest converts.
  const cr::ConvertedConfig trainer = cr::convert_deepspeed_config(
      R"({"train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto", "bf16": {"enabled": true}})",
      "ds.json");
  CHECK(cr::load_config_text(trainer.yaml, "converted").precision.dtype == "bf16");
  CHECK(trainer.unmapped.size() == 2);
  CHECK_THAT(trainer.unmapped.front(), Catch::Contains("train.micro_batch_size: 'auto' in the source"));
}

TEST_CASE("convert-config: a Colossal-AI legacy config becomes our config, key by key", "[config][convert]") {
  // The legacy configuration page's examples: a 2.5D hybrid, naive AMP, the ZeRO section.
  const std::string colossal = R"(from colossalai.amp import AMP_TYPE
from colossalai.zero.shard_utils import TensorShardStrategy

BATCH_SIZE = 32
NUM_EPOCHS = 2
parallel = dict(pipeline=2, tensor=dict(mode='2.5d', depth=1, size=4))
fp16 = dict(
    mode=AMP_TYPE.NAIVE,
    initial_scale=2 ** 8
)
zero = dict(
    model_config=dict(
        tensor_placement_policy='cuda',
        shard_strategy=TensorShardStrategy(),
        reuse_fp16_shard=True
    ),
    optimizer_config=dict(initial_scale=2**5, gpu_margin_mem_ratio=0.2)
)
gradient_accumulation = 4
clip_grad_norm = 1.0
)";
  const cr::ConvertedConfig converted = cr::convert_colossalai_config(colossal, "config.py");
  const Config config = cr::load_config_text(converted.yaml, "converted");
  CHECK(config.train.micro_batch_size == 32);
  CHECK(config.parallel.pipeline.size == 2);
  CHECK(config.parallel.tensor.size == 4);
  CHECK(config.parallel.tensor.mode == "2.5d");
  CHECK(config.parallel.tensor.depth == 1);
  CHECK(config.precision.dtype == "fp16");
  CHECK(config.precision.initial_scale == 32.0);  // zero's optimizer_config comes later and wins
  CHECK(config.zero.stage == 3);
  CHECK(config.train.clip_grad_norm == 1.0);
  const std::string unmapped = fmt::format("{}", fmt::join(converted.unmapped, "\n"));
  CHECK_THAT(unmapped, Catch::Contains("NUM_EPOCHS: training runs train.steps"));
  CHECK_THAT(unmapped, Catch::Contains("zero.model_config.reuse_fp16_shard"));
  CHECK_THAT(unmapped, Catch::Contains("zero.optimizer_config.gpu_margin_mem_ratio"));
  CHECK_THAT(unmapped, Catch::Contains("gradient_accumulation: the accumulation steps follow from"));
  CHECK(converted.unmapped.size() == 4);
  CHECK(config.zero.placement_policy == std::optional<std::string>("cuda"));
  // A 1D layout and CPU placement map one to one.
  const cr::ConvertedConfig one_d = cr::convert_colossalai_config(
      "parallel = dict(tensor=dict(size=2, mode='1d'))\n"
      "zero = dict(model_config=dict(tensor_placement_policy='cpu'))\n",
      "config.py");
  CHECK(cr::load_config_text(one_d.yaml, "converted").parallel.tensor.size == 2);
  const cr::ConvertedConfig three_d =
      cr::convert_colossalai_config("parallel = dict(tensor=dict(size=8, mode='3d'))\n", "config.py");
  CHECK(cr::load_config_text(three_d.yaml, "converted").parallel.tensor.mode == "3d");
  CHECK(three_d.unmapped.empty());
  CHECK(one_d.unmapped.empty());
  CHECK(cr::load_config_text(one_d.yaml, "converted").zero.placement_policy == std::optional<std::string>("cpu"));
  const cr::ConvertedConfig automatic = cr::convert_colossalai_config(
      "zero = dict(model_config=dict(tensor_placement_policy='auto'), optimizer_config=dict(gpu_margin_mem_ratio=0.8))\n",
      "config.py");
  CHECK(automatic.unmapped.empty());
  CHECK(cr::load_config_text(automatic.yaml, "converted").zero.gpu_margin_mem_ratio == 0.8);
  CHECK_THROWS_WITH(cr::convert_config_file("/nonexistent/ds.json"),
                    Catch::Contains("/nonexistent/ds.json: cannot read"));
}
