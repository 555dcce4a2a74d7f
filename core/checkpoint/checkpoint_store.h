// Checkpoint directories that are either complete and verifiable or absent: files are staged
// in a hidden directory, listed with their sizes and CRCs in manifest.json (written last),
// fsynced, and the directory is renamed into place. See docs/checkpoint-format.md.
//   root/step_00000010/{model.safetensors, ..., manifest.json}
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/formats/safetensors.h"

namespace cr {

// A finished file's size and CRC-32, as the manifest records them.
struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

// Computes `path`'s digest and fsyncs it: what a writer does to a file before it may be listed.
FileDigest seal_file(const std::string& path);

// "step_00000010" (at least 8 digits; larger steps get more).
std::string checkpoint_dir_name(int64_t step);

// Builds one checkpoint in root/.tmp-step_<step>-<pid>. Not thread-safe; one writer per step
// at a time. Destroying it without commit() removes the staging directory.
class CheckpointWriter {
 public:
  CheckpointWriter(const std::string& root, int64_t step);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Where to write `filename` (a plain name, no '/'; "manifest.json" is reserved). Any file
  // there when commit() runs becomes part of the checkpoint.
  std::string staged_path(const std::string& filename) const;

  void write_tensors(const std::string& filename, const std::vector<TensorView>& tensors,
                     const std::map<std::string, std::string>& metadata = {});
  void write_text(const std::string& filename, const std::string& text);

  // Adds "format_version", "step" and "files" ({name: {"bytes", "crc32"}}) to `manifest` (an
  // object without those keys, or null), writes manifest.json, fsyncs everything and renames
  // the staging directory to root/step_<step>, replacing an existing one. Returns that path.
  // `sealed`: files that other processes wrote and sealed (seal_file) in the staging directory;
  // their digests are taken as given rather than read again.
  std::string commit(nlohmann::json manifest = nullptr, const std::map<std::string, FileDigest>& sealed = {});

  const std::string& staging_dir() const { return staging_dir_; }

 private:
  std::string root_;
  int64_t step_;
  std::string staging_dir_;
  bool committed_ = false;
};

// Puts the finished directory `staging` in place of `target` (which may not exist) and deletes
// the old one. Swapped in one step where the file system can (renameat2 RENAME_EXCHANGE), so that
// a crash never leaves `target` missing; else the old one is renamed aside first and put back if
// the second rename fails. A crash can leave the old one under a hidden ".old-" or staging name.
void replace_directory(const std::string& staging, const std::string& target);

// The highest-step root/step_* directory that contains manifest.json; nullopt when there is
// none or root does not exist. Does not verify it: call verify_checkpoint() before loading.
std::optional<std::string> latest_checkpoint(const std::string& root);

// Checks that every file in dir/manifest.json exists with the recorded size and, with
// check_crcs, CRC-32; cr::Error naming dir and the file otherwise. Returns the manifest.
// Readers that touch only some files pass check_crcs = false and verify those files alone.
nlohmann::json verify_checkpoint(const std::string& dir, bool check_crcs = true);

// Checks one listed file's CRC-32 against `manifest` (from verify_checkpoint).
void verify_checkpoint_file(const std::string& dir, const nlohmann::json& manifest, const std::string& name);

// Keeps the `keep` highest-step complete checkpoints of `run` (keep <= 0 keeps all) and deletes
// the rest of that run's, plus leftovers of this process (staging dirs of writers no longer
// alive). Checkpoints of other runs, and other processes' staging dirs, are left alone.
void prune_checkpoints(const std::string& root, int64_t keep, const std::string& run);

// The run that wrote the checkpoint in `dir`: its manifest's "run" string; "" when it has none.
std::string checkpoint_run(const std::string& dir);

// Deletes the staging and retired directories that interrupted saves of any process left in
// root; for a job's start, when no other writer may be using root. Returns what it deleted.
std::vector<std::string> remove_interrupted_saves(const std::string& root);

}  // namespace cr
