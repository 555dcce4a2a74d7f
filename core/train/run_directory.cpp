#include "core/train/run_directory.h"

#include <filesystem>
#include <fstream>

#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/strings.h"
#include "core/checkpoint/checkpoint_store.h"

namespace cr {
namespace {

namespace fs = std::filesystem;

void create_directory_for(const std::string& key, const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return;
  if (fs::exists(fs::symlink_status(path, ec))) fail("{} '{}': exists and is not a directory", key, shortened(path));
  fs::create_directories(path, ec);
  if (ec) fail("{} '{}': cannot create the directory: {}", key, shortened(path), ec.message());
}

bool has_records(const fs::path& metrics) {
  std::error_code ec;
  return fs::is_regular_file(metrics, ec) && fs::file_size(metrics, ec) > 0 && !ec;
}

}  // namespace

std::string checkpoint_root(const Config& config) {
  return config.checkpoint.dir.value_or((fs::path(config.runtime.run_dir) / "checkpoints").string());
}

void prepare_run_directories(const Config& config, bool resuming) {
  const std::string& run_dir = config.runtime.run_dir;
  const std::string root = checkpoint_root(config);
  const std::string root_key = config.checkpoint.dir ? "checkpoint.dir" : "runtime.run_dir (its checkpoints/)";
  create_directory_for("runtime.run_dir", run_dir);
  create_directory_for(root_key, root);

  if (!resuming && config.checkpoint.resume == "none") {
    const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
    const auto latest = latest_checkpoint(root);
    if (has_records(metrics) || latest) {
      fail("checkpoint.resume is none, but {} already holds a run ({}): a fresh start would overwrite its metrics "
           "and mix its checkpoints with the new run's. Choose another runtime.run_dir{}, delete the old run, or "
           "set checkpoint.resume: auto to continue it",
           shortened(run_dir), latest ? shortened(*latest) : shortened(metrics.string()),
           config.checkpoint.dir ? " and checkpoint.dir" : "");
    }
  }
  const auto removed = remove_interrupted_saves(root);
  if (!removed.empty()) {
    print0("removed {} unfinished checkpoint save{} left in {} by an interrupted run", removed.size(),
           removed.size() == 1 ? "" : "s", shortened(root));
  }

  const std::string config_path = (fs::path(run_dir) / "config.yaml").string();
  std::ofstream out(config_path, std::ios::trunc);
  out << dump_config(config);
  out.close();
  if (!out) fail("runtime.run_dir: cannot write {}", shortened(config_path));
}

}  // namespace cr
