#include "core/train_checkpoint.h"

#include <cstring>
#include <filesystem>

#include <fmt/ranges.h>

#include "core/checkpoint_store.h"
#include "core/error.h"
#include "core/safetensors.h"

namespace cr {
namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";

// Named fp32 views of a flat buffer laid out like `params`, contiguous on the host.
std::vector<TensorView> named_views(const std::vector<FlatEntry>& entries, const torch::Tensor& host_flat,
                                    const std::string& prefix) {
  std::vector<TensorView> views;
  for (const auto& entry : entries) {
    views.push_back({prefix + entry.name, DType::F32, entry.shape,
                     host_flat.data_ptr<float>() + entry.offset, static_cast<size_t>(entry.numel) * sizeof(float)});
  }
  return views;
}

// Copies every named tensor of `file` into the matching slice of `flat`.
void load_named(const SafetensorsFile& file, FlatParameters& params, torch::Tensor& flat,
                const std::string& prefix, const std::string& dir) {
  auto host = torch::empty({params.numel()}, torch::kFloat);
  for (const auto& entry : params.entries()) {
    const std::string name = prefix + entry.name;
    if (!file.contains(name)) {
      fail("checkpoint {}: {} has no tensor '{}' (was it written for another model?)", dir,
           std::filesystem::path(file.path()).filename().string(), name);
    }
    const auto& view = file.get(name);
    if (view.dtype != DType::F32 || view.shape != entry.shape) {
      fail("checkpoint {}: tensor '{}' is {} {} but the model needs F32 {}", dir, name, dtype_name(view.dtype),
           fmt::format("{}", fmt::join(view.shape, "x")), fmt::format("{}", fmt::join(entry.shape, "x")));
    }
    std::memcpy(host.data_ptr<float>() + entry.offset, view.data, view.nbytes);
  }
  torch::NoGradGuard no_grad;
  flat.copy_(host);
}

}  // namespace

std::string save_train_checkpoint(const std::string& root, const Config& config, const TrainPosition& position,
                                  int data_parallel_size, const std::vector<FlatEntry>& entries,
                                  const torch::Tensor& master, const FullOptimizerState& optimizer) {
  std::filesystem::create_directories(root);
  CheckpointWriter writer(root, position.step);
  auto host_master = master.to(torch::kCPU).contiguous();
  writer.write_tensors(kModelFile, named_views(entries, host_master, ""), {{"format", "pt"}});
  auto exp_avg = optimizer.exp_avg.to(torch::kCPU).contiguous();
  auto exp_avg_sq = optimizer.exp_avg_sq.to(torch::kCPU).contiguous();
  auto moments = named_views(entries, exp_avg, "exp_avg.");
  auto second = named_views(entries, exp_avg_sq, "exp_avg_sq.");
  moments.insert(moments.end(), second.begin(), second.end());
  writer.write_tensors(kOptimizerFile, moments);
  writer.write_text("config.yaml", dump_config(config));
  nlohmann::json manifest = {
      {"kind", "colossal-run training state"},
      {"optimizer_step", optimizer.step_count},
      {"samples_consumed", position.samples_consumed},
      {"seed", config.train.seed},
      // Random streams are re-seeded from (seed, step) every step, so no generator state is needed.
      {"rng", "reseeded per step from train.seed"},
      {"mesh", {{"world_size", data_parallel_size}, {"data", data_parallel_size}, {"tensor", 1}, {"pipeline", 1}}},
      {"parameters", master.numel()},
  };
  if (optimizer.loss_scale) {
    manifest["loss_scaler"] = {{"scale", optimizer.loss_scale->scale},
                               {"growth_step", optimizer.loss_scale->growth_step},
                               {"hysteresis_step", optimizer.loss_scale->hysteresis_step}};
  }
  return writer.commit(manifest);
}

TrainPosition load_train_checkpoint(const std::string& dir, FlatParameters& params, FullOptimizerState* optimizer) {
  const auto manifest = verify_checkpoint(dir);
  if (!manifest.contains("step") || !manifest.contains("samples_consumed")) {
    fail("checkpoint {}: manifest.json has no step / samples_consumed: not a training checkpoint", dir);
  }
  SafetensorsFile model_file((std::filesystem::path(dir) / kModelFile).string());
  load_named(model_file, params, params.master(), "", dir);
  params.publish_master();
  TrainPosition position{manifest["step"].get<int64_t>(), manifest["samples_consumed"].get<int64_t>()};
  if (optimizer) {
    SafetensorsFile optimizer_file((std::filesystem::path(dir) / kOptimizerFile).string());
    optimizer->exp_avg = torch::empty({params.numel()}, params.master().options());
    optimizer->exp_avg_sq = torch::empty_like(optimizer->exp_avg);
    load_named(optimizer_file, params, optimizer->exp_avg, "exp_avg.", dir);
    load_named(optimizer_file, params, optimizer->exp_avg_sq, "exp_avg_sq.", dir);
    optimizer->step_count = manifest.value("optimizer_step", position.step);
    if (manifest.contains("loss_scaler")) {
      const auto& scaler = manifest["loss_scaler"];
      optimizer->loss_scale = DynamicLossScaler::State{scaler.at("scale").get<double>(),
                                                       scaler.at("growth_step").get<int64_t>(),
                                                       scaler.at("hysteresis_step").get<int64_t>()};
    }
  }
  return position;
}

std::optional<std::string> checkpoint_to_resume(const CheckpointConfig& config, const std::string& root) {
  if (config.resume == "none") return std::nullopt;
  if (config.resume == "auto") return latest_checkpoint(root);
  if (!std::filesystem::is_directory(config.resume)) {
    fail("checkpoint.resume: '{}' is not a checkpoint directory", config.resume);
  }
  return config.resume;
}

}  // namespace cr
