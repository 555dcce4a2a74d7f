#include "core/train/train_checkpoint.h"

#include <chrono>
#include <filesystem>
#include <random>

#include <torch/torch.h>

#include "core/base/error.h"
#include "core/base/strings.h"
#include "core/checkpoint/checkpoint_store.h"

namespace cr {
namespace {

namespace fs = std::filesystem;

constexpr const char* kKind = "colossal-run training state";

nlohmann::json mesh_json(const ProcessMesh& mesh) {
  const auto& shape = mesh.shape();
  return {{"world_size", mesh.world_size()}, {"data", shape.data},         {"tensor", shape.tensor},
          {"pipeline", shape.pipeline},      {"sequence", shape.sequence}};
}

}  // namespace

std::string save_train_checkpoint(const std::string& root, const Config& config, const TrainState& state,
                                  const CheckpointPart& part, int64_t parameters, int64_t keep,
                                  const ParallelContext& context) {
  Communicator* control = context.control();
  const int rank = control ? control->rank() : 0, ranks = control ? control->size() : 1;
  std::optional<CheckpointWriter> writer;
  std::string staging;
  if (rank == 0) {
    writer.emplace(root, state.position.step);
    // Absolute: ranks may have started in other working directories.
    staging = fs::absolute(writer->staging_dir()).string();
  }
  if (control) staging = broadcast_string(*control, staging);
  const FileDigest digest = write_slice_file((fs::path(staging) / slice_file_name(rank, ranks)).string(), part.slices);

  std::map<std::string, FileDigest> sealed;
  if (control) {
    // Large parts take as long as they take: only a rank that dies ends this wait.
    control->barrier_untimed();
    auto mine = torch::tensor({static_cast<int64_t>(digest.bytes), static_cast<int64_t>(digest.crc32)}, torch::kLong);
    auto all = torch::empty({2 * ranks}, torch::kLong);
    control->all_gather(mine, all);
    for (int r = 0; r < ranks; ++r) {
      sealed[slice_file_name(r, ranks)] = {static_cast<uint64_t>(all[2 * r].item<int64_t>()),
                                           static_cast<uint32_t>(all[2 * r + 1].item<int64_t>())};
    }
  } else {
    sealed[slice_file_name(0, 1)] = digest;
  }
  std::string path = (fs::path(root) / checkpoint_dir_name(state.position.step)).string();
  if (rank == 0) {
    writer->write_text("config.yaml", dump_config(config));
    nlohmann::json manifest = {
        {"kind", kKind},
        {"layout", "tensor slices"},
        {"optimizer_step", state.optimizer_steps},
        {"samples_consumed", state.position.samples_consumed},
        {"seed", config.train.seed},
        // Random streams are re-seeded from (seed, step) every step, so no generator state is needed.
        {"rng", "reseeded per step from train.seed"},
        {"mesh", mesh_json(context.mesh())},
        {"zero_stage", config.zero.stage},
        {"parameters", parameters},
        {"run", state.run},
    };
    if (state.loss_scale) {
      manifest["loss_scaler"] = {{"scale", state.loss_scale->scale},
                                 {"growth_step", state.loss_scale->growth_step},
                                 {"hysteresis_step", state.loss_scale->hysteresis_step}};
    }
    path = writer->commit(manifest, sealed);
    prune_checkpoints(root, keep, state.run);
  }
  if (control) control->barrier_untimed();
  return path;
}

std::string new_run_id() {
  std::random_device entropy;
  const uint64_t id = (static_cast<uint64_t>(entropy()) << 32) ^ entropy() ^
                      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return fmt::format("{:016x}", id);
}

OpenedCheckpoint open_train_checkpoint(const std::string& dir) {
  OpenedCheckpoint opened;
  opened.dir = dir;
  opened.manifest = verify_checkpoint(dir, /*check_crcs=*/false);
  const auto& manifest = opened.manifest;
  if (!manifest.contains("step") || !manifest.contains("samples_consumed")) {
    fail("checkpoint {}: manifest.json has no step / samples_consumed: not a training checkpoint", dir);
  }
  if (manifest.contains("kind") && manifest["kind"] != kKind) {
    fail("checkpoint {}: manifest.json says kind {}, not a training checkpoint", dir, shortened(manifest["kind"].dump()));
  }
  try {
    auto& state = opened.state;
    state.position = {manifest["step"].get<int64_t>(), manifest["samples_consumed"].get<int64_t>()};
    state.optimizer_steps = manifest.value("optimizer_step", state.position.step);
    state.run = manifest.value("run", std::string());
    if (manifest.contains("loss_scaler")) {
      const auto& scaler = manifest["loss_scaler"];
      state.loss_scale = DynamicLossScaler::State{scaler.at("scale").get<double>(), scaler.at("growth_step").get<int64_t>(),
                                                  scaler.at("hysteresis_step").get<int64_t>()};
    }
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint {}: malformed manifest.json: {}", dir, e.what());
  }
  // Every tensor file: this release's shard-*-of-* files, or the whole-tensor model.safetensors
  // and optimizer.safetensors of checkpoints written before slices.
  std::vector<std::string> files;
  for (const auto& [name, entry] : manifest["files"].items()) {
    if (fs::path(name).extension() == ".safetensors") files.push_back(name);
  }
  if (files.empty()) fail("checkpoint {}: manifest.json lists no .safetensors files", dir);
  opened.reader = std::make_unique<SliceReader>(dir, manifest, files);
  return opened;
}

CheckpointWeights::CheckpointWeights(const std::string& dir, const std::vector<FlatEntry>& entries)
    : opened_(open_train_checkpoint(dir)) {
  for (const auto& entry : entries) opened_.reader->check_shape(entry.name, entry.global_shape());
}

void CheckpointWeights::read(const FlatEntry& entry, int64_t begin, int64_t count, float* out) const {
  opened_.reader->read(entry.name, begin, count, out);
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
