#include "core/config/foreign_config.h"

#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "core/base/error.h"
#include "core/config/config.h"
#include "core/config/python_literal.h"

namespace cr {
namespace {

using Json = nlohmann::ordered_json;

// Source keys and ours, one to one.
using KeyMap = std::initializer_list<std::pair<const char*, const char*>>;

// Ours for `key` when `keys` maps it one to one; null otherwise.
const char* one_to_one(const std::string& key, KeyMap keys) {
  for (const auto& [from, to] : keys) {
    if (key == from) return to;
  }
  return nullptr;
}

// What a translation produces: our keys with values, in the order set, and what was said about
// the source's keys.
class Translation {
 public:
  explicit Translation(std::string source) : source_(std::move(source)) {}

  void set(const std::string& key, const Json& value) {
    if (value == "auto" && key != "zero.placement_policy") {
      // Hugging Face's Trainer fills DeepSpeed's "auto" values in at run time.
      unmapped(key, "'auto' in the source: the Hugging Face Trainer fills it in at run time; give the value");
      return;
    }
    for (auto& [existing, old] : values_) {
      if (existing == key) {
        old = value;
        return;
      }
    }
    values_.emplace_back(key, value);
  }
  // Each (source key, ours) whose source key `object` has, one to one.
  void set_present(const Json& object, KeyMap keys) {
    if (!object.is_object()) return;
    for (const auto& [from, to] : keys) {
      if (object.contains(from)) set(to, object[from]);
    }
  }
  void note(const std::string& text) { result_.notes.push_back(text); }
  void unmapped(const std::string& key, const std::string& why) { result_.unmapped.push_back(key + ": " + why); }

  // Every key of `object` (under `prefix`) not in `handled`, as unmapped for `why`.
  void rest_unmapped(const Json& object, const std::string& prefix, const std::vector<std::string>& handled,
                     const std::string& why) {
    for (const auto& [key, value] : object.items()) {
      if (std::find(handled.begin(), handled.end(), key) == handled.end()) unmapped(prefix + key, why);
    }
  }

  ConvertedConfig finish(const std::string& kind) {
    Json tree = Json::object();
    for (const auto& [key, value] : values_) {
      Json* node = &tree;
      std::stringstream path(key);
      for (std::string part; std::getline(path, part, '.');) node = &(*node)[part];
      *node = value;
    }
    YAML::Emitter out;
    out << to_yaml(tree);
    std::string yaml = fmt::format("# converted from {} ({}) by colossal-run convert-config\n", source_, kind);
    if (!values_.empty()) yaml += std::string(out.c_str()) + "\n";
    for (const std::string& line : result_.notes) yaml += "# note: " + line + "\n";
    for (const std::string& line : result_.unmapped) yaml += "# not mapped: " + line + "\n";
    // What comes out must load: a translation that produced an invalid config is a defect here.
    load_config_text(yaml, source_ + " (converted)");
    result_.yaml = yaml;
    return result_;
  }

 private:
  static YAML::Node to_yaml(const Json& value) {
    if (value.is_boolean()) return YAML::Node(value.get<bool>());
    if (value.is_number_integer()) return YAML::Node(value.get<int64_t>());
    // 15 significant digits: 0.0003 and 3e-05, not 0.00029999999999999997 or a product's last-bit noise.
    if (value.is_number()) return YAML::Node(fmt::format("{:.15g}", value.get<double>()));
    if (value.is_string()) return YAML::Node(value.get<std::string>());
    if (value.is_object()) {
      YAML::Node map(YAML::NodeType::Map);
      for (const auto& [key, item] : value.items()) map[key] = to_yaml(item);
      return map;
    }
    YAML::Node list(YAML::NodeType::Sequence);
    list.SetStyle(YAML::EmitterStyle::Flow);
    for (const auto& item : value) list.push_back(to_yaml(item));
    return list;
  }

  std::string source_;
  std::vector<std::pair<std::string, Json>> values_;
  ConvertedConfig result_;
};

// A value read from the source for `key`, checked to be a number (or bool, string).
const Json& number_at(const Json& object, const char* key, const std::string& path) {
  const Json& value = object.at(key);
  if (!value.is_number()) fail("{}: expected a number, got {}", path, value.dump());
  return value;
}

bool enabled(const Json& section) {
  if (section.is_boolean()) return section.get<bool>();
  return section.is_object() && section.value("enabled", false);
}

// The global batch from the accumulation steps needs the data-parallel size, known at launch.
constexpr const char* kAccumulationWhy =
    "the accumulation steps follow from train.global_batch_size / (train.micro_batch_size x data ranks); set "
    "train.global_batch_size to micro batch x steps x data ranks";

void deepspeed_optimizer(const Json& section, Translation& t) {
  const std::string type = section.value("type", "");
  std::string lower = type;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower != "adam" && lower != "adamw") {
    t.unmapped("optimizer.type", fmt::format("'{}': only Adam and AdamW are available", type));
    return;
  }
  const Json params = section.value("params", Json::object());
  // DeepSpeed's Adam decouples weight decay unless adam_w_mode is false.
  const bool decoupled = lower == "adamw" || params.value("adam_w_mode", true);
  t.set("optimizer.name", decoupled ? "adamw" : "adam");
  if (lower == "adam" && decoupled) {
    t.note("optimizer.type Adam -> optimizer.name adamw: DeepSpeed's adam_w_mode (default true)");
  }
  t.set_present(params, {{"lr", "optimizer.lr"},
                         {"betas", "optimizer.betas"},
                         {"eps", "optimizer.eps"},
                         {"weight_decay", "optimizer.weight_decay"}});
  t.rest_unmapped(params, "optimizer.params.", {"lr", "betas", "eps", "weight_decay", "adam_w_mode", "torch_adam"},
                  "no equivalent (the fused CPU Adam or LibTorch's is chosen by device)");
  t.rest_unmapped(section, "optimizer.", {"type", "params"}, "no equivalent");
}

void deepspeed_scheduler(const Json& section, Translation& t) {
  const std::string type = section.value("type", "");
  const Json params = section.value("params", Json::object());
  if (type != "WarmupLR" && type != "WarmupDecayLR" && type != "WarmupCosineLR") {
    t.unmapped("scheduler.type",
               fmt::format("'{}': warm-up then constant, linear or cosine decay are available", type));
    return;
  }
  t.set("lr_schedule.kind", type == "WarmupLR" ? "constant" : type == "WarmupDecayLR" ? "linear" : "cosine");
  if (params.contains("warmup_num_steps")) t.set("lr_schedule.warmup_steps", params["warmup_num_steps"]);
  if (params.contains("total_num_steps")) t.set("lr_schedule.decay_steps", params["total_num_steps"]);
  if (params.contains("warmup_max_lr")) t.set("optimizer.lr", params["warmup_max_lr"]);
  if (type == "WarmupDecayLR") t.set("lr_schedule.min_lr", 0.0);
  if (params.value("warmup_type", "log") == "log") {
    t.note("scheduler.params.warmup_type: warm-up is linear here (DeepSpeed's default is log)");
  }
  if (params.contains("warmup_min_ratio") && params["warmup_min_ratio"] != 0) {
    t.unmapped("scheduler.params.warmup_min_ratio", "warm-up starts from 0 here");
  }
  if (params.contains("warmup_min_lr") && params["warmup_min_lr"] != 0) {
    t.unmapped("scheduler.params.warmup_min_lr", "warm-up starts from 0 here");
  }
  t.rest_unmapped(params, "scheduler.params.",
                  {"warmup_num_steps", "total_num_steps", "warmup_max_lr", "warmup_min_lr", "cos_min_ratio",
                   "warmup_min_ratio", "warmup_type"},
                  "no equivalent");
}

void deepspeed_fp16(const Json& section, Translation& t) {
  t.set("precision.dtype", "fp16");
  if (section.contains("loss_scale") && section["loss_scale"] != 0) {
    t.unmapped("fp16.loss_scale", "a static loss scale: the scale here is always dynamic");
  }
  if (section.contains("initial_scale_power")) {
    const double power = number_at(section, "initial_scale_power", "fp16.initial_scale_power").get<double>();
    t.set("precision.initial_scale", std::pow(2.0, power));
    t.note("fp16.initial_scale_power p -> precision.initial_scale 2^p");
  }
  t.set_present(section, {{"loss_scale_window", "precision.growth_interval"},
                          {"hysteresis", "precision.hysteresis"},
                          {"min_loss_scale", "precision.min_scale"}});
  t.rest_unmapped(section, "fp16.",
                  {"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis", "min_loss_scale"},
                  "no equivalent");
}

void deepspeed_zero(const Json& section, Translation& t) {
  if (section.is_boolean()) {
    // DeepSpeed's early form: true is stage 1.
    if (section.get<bool>()) t.set("zero.stage", 1);
    return;
  }
  if (section.contains("stage")) t.set("zero.stage", section["stage"]);
  if (section.contains("overlap_comm")) t.set("zero.overlap_communication", section["overlap_comm"]);
  if (section.contains("reduce_bucket_size")) {
    // DeepSpeed counts elements; ours is MiB of fp32 gradients.
    const double elements =
        number_at(section, "reduce_bucket_size", "zero_optimization.reduce_bucket_size").get<double>();
    t.set("parallel.bucket_mb", std::max(1.0, std::round(elements * 4.0 / (1024.0 * 1024.0))));
    t.note("zero_optimization.reduce_bucket_size (elements) -> parallel.bucket_mb (MiB of fp32)");
  }
  for (const char* offload : {"offload_optimizer", "offload_param", "cpu_offload"}) {
    if (section.contains(offload)) {
      t.unmapped(std::string("zero_optimization.") + offload, "offloading to CPU or NVMe is not available yet");
    }
  }
  t.rest_unmapped(section, "zero_optimization.",
                  {"stage", "overlap_comm", "reduce_bucket_size", "offload_optimizer", "offload_param", "cpu_offload"},
                  "a tuning knob with no counterpart here (buckets: parallel.bucket_mb)");
}

}  // namespace

ConvertedConfig convert_deepspeed_config(const std::string& text, const std::string& source_name) {
  const Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) fail("{}: not a JSON object (a DeepSpeed config is one)", source_name);
  Translation t(source_name);
  for (const auto& [key, value] : config.items()) {
    if (const char* ours = one_to_one(key, {{"train_batch_size", "train.global_batch_size"},
                                            {"train_micro_batch_size_per_gpu", "train.micro_batch_size"},
                                            {"gradient_clipping", "train.clip_grad_norm"},
                                            {"steps_per_print", "train.log_every"},
                                            {"wall_clock_breakdown", "train.time_breakdown"}})) {
      t.set(ours, value);
      continue;
    }
    const bool section = key == "optimizer" || key == "scheduler" || key == "fp16" || key == "bf16" ||
                         key == "bfloat16" || key == "zero_optimization" || key == "activation_checkpointing" ||
                         key == "tensorboard";
    if (section && !value.is_object() && !(value.is_boolean() && key == "zero_optimization")) {
      fail("{}: {} must be an object, got {}", source_name, key, value.dump());
    }
    if (key == "gradient_accumulation_steps") {
      if (config.contains("train_batch_size")) {
        t.note("gradient_accumulation_steps: follows from train.global_batch_size");
      } else {
        t.unmapped(key, kAccumulationWhy);
      }
    } else if (key == "optimizer") {
      deepspeed_optimizer(value, t);
    } else if (key == "scheduler") {
      deepspeed_scheduler(value, t);
    } else if (key == "fp16") {
      if (enabled(value)) deepspeed_fp16(value, t);
    } else if (key == "bf16" || key == "bfloat16") {
      if (enabled(value)) t.set("precision.dtype", "bf16");
      if (value.is_object()) t.rest_unmapped(value, key + ".", {"enabled"}, "no equivalent");
    } else if (key == "zero_optimization") {
      deepspeed_zero(value, t);
    } else if (key == "activation_checkpointing") {
      t.set("train.activation_checkpointing", "full");
      t.note("activation_checkpointing -> train.activation_checkpointing full: every block is recomputed");
      if (value.is_object()) t.rest_unmapped(value, key + ".", {}, "no equivalent");
    } else if (key == "tensorboard") {
      if (enabled(value)) t.set("runtime.tensorboard", true);
      if (value.is_object()) t.rest_unmapped(value, key + ".", {"enabled"}, "the files go to <run_dir>/tensorboard");
    } else {
      t.unmapped(key, "no equivalent");
    }
  }
  // WarmupCosineLR's floor is a ratio of the peak rate, wherever that was given.
  const Json scheduler = config.value("scheduler", Json::object());
  const Json params = scheduler.is_object() ? scheduler.value("params", Json::object()) : Json::object();
  if (params.contains("cos_min_ratio")) {
    const Json optimizer = config.value("optimizer", Json::object()).value("params", Json::object());
    const Json lr = params.contains("warmup_max_lr") ? params["warmup_max_lr"] : optimizer.value("lr", Json());
    if (lr.is_number() && params["cos_min_ratio"].is_number()) {
      t.set("lr_schedule.min_lr", params["cos_min_ratio"].get<double>() * lr.get<double>());
      t.note("scheduler.params.cos_min_ratio -> lr_schedule.min_lr: the ratio times the peak rate");
    } else {
      t.unmapped("scheduler.params.cos_min_ratio", "needs the peak rate (optimizer.params.lr)");
    }
  }
  return t.finish("DeepSpeed JSON");
}

ConvertedConfig convert_colossalai_config(const std::string& text, const std::string& source_name) {
  const Json config = parse_python_literals(text, source_name);
  Translation t(source_name);
  for (const auto& [key, value] : config.items()) {
    // The examples' conventional names as well as Colossal-AI's own keys.
    if (const char* ours = one_to_one(key, {{"clip_grad_norm", "train.clip_grad_norm"},
                                            {"seed", "train.seed"},
                                            {"LEARNING_RATE", "optimizer.lr"},
                                            {"LR", "optimizer.lr"},
                                            {"WEIGHT_DECAY", "optimizer.weight_decay"},
                                            {"SEQ_LEN", "data.seq_len"},
                                            {"SEQ_LENGTH", "data.seq_len"}})) {
      t.set(ours, value);
      continue;
    }
    if (key == "parallel") {
      if (!value.is_object()) fail("{}: parallel must be a dict", source_name);
      if (value.contains("pipeline")) {
        const Json& pipeline = value["pipeline"];
        t.set("parallel.pipeline.size", pipeline.is_object() ? pipeline.value("size", Json(1)) : pipeline);
      }
      if (value.contains("tensor")) {
        const Json& tensor = value["tensor"];
        const std::string mode = tensor.is_object() ? tensor.value("mode", "1d") : "1d";
        const Json size = tensor.is_object() ? tensor.value("size", Json(1)) : tensor;
        // The modes and their checks are ours too (an unknown mode fails when the config loads).
        t.set("parallel.tensor.size", size);
        if (mode != "1d") t.set("parallel.tensor.mode", mode);
        if (mode == "2.5d") t.set("parallel.tensor.depth", tensor.value("depth", Json(1)));
      }
      if (value.contains("data")) t.note("parallel.data: the data-parallel size is what the job leaves over");
      t.rest_unmapped(value, "parallel.", {"pipeline", "tensor", "data"}, "no equivalent");
    } else if (key == "fp16") {
      t.set("precision.dtype", "fp16");
      t.set_present(value, {{"initial_scale", "precision.initial_scale"},
                            {"init_scale", "precision.initial_scale"},
                            {"growth_factor", "precision.growth_factor"},
                            {"backoff_factor", "precision.backoff_factor"},
                            {"growth_interval", "precision.growth_interval"},
                            {"hysteresis", "precision.hysteresis"},
                            {"min_scale", "precision.min_scale"},
                            {"max_scale", "precision.max_scale"}});
      if (value.is_object() && value.contains("mode")) {
        t.note("fp16.mode " + value["mode"].value("$name", value["mode"].dump()) +
               " -> precision.dtype fp16 with dynamic loss scaling and fp32 master weights");
      }
      if (value.is_object()) {
        t.rest_unmapped(value, "fp16.",
                        {"mode", "initial_scale", "init_scale", "growth_factor", "backoff_factor", "growth_interval",
                         "hysteresis", "min_scale", "max_scale"},
                        "no equivalent");
      }
    } else if (key == "zero") {
      // The legacy engine shards parameters, gradients and optimizer states: ZeRO-3.
      t.set("zero.stage", value.is_object() && value.contains("level") ? value["level"] : Json(3));
      const Json model = value.is_object() ? value.value("model_config", Json::object()) : Json::object();
      const Json optimizer = value.is_object() ? value.value("optimizer_config", Json::object()) : Json::object();
      const std::string placement = model.value("tensor_placement_policy", "");
      if (placement == "cuda" || placement == "cpu" || placement == "auto") {
        t.set("zero.placement_policy", placement);
      } else if (!placement.empty()) {
        t.unmapped("zero.model_config.tensor_placement_policy",
                   fmt::format("'{}' is not a placement policy (cuda, cpu or auto)", placement));
      }
      if (model.contains("shard_strategy")) {
        t.note("zero.model_config.shard_strategy: ZeRO-3 shards evenly over the data ranks");
      }
      t.rest_unmapped(model, "zero.model_config.", {"tensor_placement_policy", "shard_strategy"}, "no equivalent");
      if (optimizer.contains("initial_scale")) t.set("precision.initial_scale", optimizer["initial_scale"]);
      const bool margin = placement == "auto" && optimizer.contains("gpu_margin_mem_ratio");
      if (margin) t.set("zero.gpu_margin_mem_ratio", optimizer["gpu_margin_mem_ratio"]);
      t.rest_unmapped(optimizer, "zero.optimizer_config.",
                      margin ? std::vector<std::string>{"initial_scale", "gpu_margin_mem_ratio"}
                             : std::vector<std::string>{"initial_scale"},
                      "no equivalent (gpu_margin_mem_ratio applies to tensor_placement_policy 'auto' only)");
      if (value.is_object()) {
        t.rest_unmapped(value, "zero.", {"level", "model_config", "optimizer_config"}, "no equivalent");
      }
    } else if (key == "gradient_accumulation") {
      t.unmapped(key, kAccumulationWhy);
    } else if (key == "BATCH_SIZE") {
      t.set("train.micro_batch_size", value);
      t.note("BATCH_SIZE -> train.micro_batch_size: the examples' per-process batch");
    } else if (key == "NUM_EPOCHS") {
      t.unmapped(key, "training runs train.steps optimizer steps, not epochs");
    } else {
      t.unmapped(key, "no equivalent");
    }
  }
  return t.finish("Colossal-AI legacy config");
}

ConvertedConfig convert_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read the file", path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string extension = std::filesystem::path(path).extension().string();
  if (extension == ".json") return convert_deepspeed_config(text.str(), path);
  if (extension == ".py") return convert_colossalai_config(text.str(), path);
  fail("{}: convert-config reads a DeepSpeed .json or a Colossal-AI legacy .py config", path);
}

}  // namespace cr
