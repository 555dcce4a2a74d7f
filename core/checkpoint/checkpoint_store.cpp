#include "core/checkpoint/checkpoint_store.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "core/base/crc32.h"
#include "core/base/error.h"
#include "core/base/json.h"
#include "core/base/strings.h"

namespace cr {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr int kFormatVersion = 1;
constexpr const char* kStagingPrefix = ".tmp-";  // a writer's files before commit
constexpr const char* kRetiredPrefix = ".old-";  // a replaced or pruned checkpoint being deleted
constexpr const char* kRunKey = "run";           // the manifest key naming the run that wrote it

// Hidden directories this process is using right now, so that prune_checkpoints() only
// deletes this process's leftovers, never a writer that is still staging.
std::mutex g_in_use_mutex;
std::set<std::string> g_in_use;

void mark_in_use(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_in_use_mutex);
  g_in_use.insert(path);
}

void unmark_in_use(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_in_use_mutex);
  g_in_use.erase(path);
}

bool in_use(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_in_use_mutex);
  return g_in_use.count(path) > 0;
}

class InUseScope {
 public:
  explicit InUseScope(std::string path) : path_(std::move(path)) { mark_in_use(path_); }
  ~InUseScope() { unmark_in_use(path_); }
  InUseScope(const InUseScope&) = delete;
  InUseScope& operator=(const InUseScope&) = delete;

 private:
  std::string path_;
};

std::string pid_suffix() { return fmt::format("-{}", ::getpid()); }

std::string hidden_dir(const std::string& root, const char* prefix, const std::string& name) {
  return (fs::path(root) / (prefix + name + pid_suffix())).string();
}

// The step of a "step_<digits>" directory name.
std::optional<int64_t> parse_step_name(const std::string& name) {
  constexpr size_t kPrefix = 5;  // "step_"
  if (name.compare(0, kPrefix, "step_") != 0 || name.size() == kPrefix ||
      name.size() > kPrefix + 18) {
    return std::nullopt;
  }
  int64_t step = 0;
  for (size_t i = kPrefix; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// The staging and retired directories in root, of any process.
std::vector<std::string> hidden_directories(const std::string& root) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return found;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(kStagingPrefix, 0) == 0 || name.rfind(kRetiredPrefix, 0) == 0) found.push_back(it->path().string());
  }
  if (ec) fail("{}: cannot list the checkpoint root: {}", root, ec.message());
  return found;
}

// step_* directories with a manifest, by increasing step.
std::vector<std::pair<int64_t, std::string>> complete_checkpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::exists(root, ec)) return found;
  if (!fs::is_directory(root, ec)) fail("{}: checkpoint root is not a directory", root);
  fs::directory_iterator it(root, ec);
  if (ec) fail("{}: cannot list the checkpoint root: {}", root, ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const auto step = parse_step_name(it->path().filename().string());
    if (step && fs::is_regular_file(it->path() / kManifest, ec)) {
      found.emplace_back(*step, it->path().string());
    }
  }
  if (ec) fail("{}: cannot list the checkpoint root: {}", root, ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail("{}: cannot open to fsync: {}", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail("{}: fsync failed: {}", path, std::strerror(err));
}

void write_file(const std::string& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) fail("{}: cannot create: {}", path, std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const int write_err = errno;
  if (std::fclose(file) != 0 || !written) {
    fail("{}: write failed: {}", path, std::strerror(written ? errno : write_err));
  }
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) fail("{}: cannot delete: {}", path, ec.message());
}

void rename_or_fail(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    fail("cannot rename {} to {}: {}", from, to, std::strerror(errno));
  }
}

std::string crc_hex(uint32_t crc) { return fmt::format("{:08x}", crc); }

std::optional<uint32_t> parse_crc_hex(const nlohmann::json& value) {
  if (!value.is_string()) return std::nullopt;
  const auto& text = value.get_ref<const std::string&>();
  if (text.size() != 8 || text.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(std::stoul(text, nullptr, 16));
}

// A manifest entry names a file inside the checkpoint directory, never a path elsewhere.
bool is_plain_filename(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

}  // namespace

FileDigest seal_file(const std::string& path) {
  std::error_code ec;
  const auto bytes = fs::file_size(path, ec);
  if (ec) fail("{}: cannot stat: {}", path, ec.message());
  FileDigest digest{bytes, crc32_file(path)};
  fsync_path(path, false);
  return digest;
}

std::string checkpoint_dir_name(int64_t step) { return fmt::format("step_{:08d}", step); }

CheckpointWriter::CheckpointWriter(const std::string& root, int64_t step)
    : root_(root), step_(step) {
  if (step < 0) fail("{}: checkpoint step must be >= 0, got {}", root, step);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail("{}: cannot create the checkpoint root: {}", root, ec.message());
  const std::string staging = hidden_dir(root, kStagingPrefix, checkpoint_dir_name(step));
  if (in_use(staging)) fail("{}: another writer in this process is staging step {}", root, step);
  // Left over from an earlier process with the same pid.
  remove_tree(staging);
  fs::create_directory(staging, ec);
  if (ec) fail("{}: cannot create the staging directory: {}", staging, ec.message());
  staging_dir_ = staging;
  mark_in_use(staging_dir_);
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(staging_dir_, ec);
  }
  unmark_in_use(staging_dir_);
}

std::string CheckpointWriter::staged_path(const std::string& filename) const {
  if (committed_) fail("{}: step {} is already committed", root_, step_);
  if (!is_plain_filename(filename)) {
    fail("{}: '{}' is not a plain file name (checkpoints are flat directories)", staging_dir_,
         filename);
  }
  if (filename == kManifest) fail("{}: {} is written by commit()", staging_dir_, kManifest);
  return (fs::path(staging_dir_) / filename).string();
}

void CheckpointWriter::write_tensors(const std::string& filename,
                                     const std::vector<TensorView>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  write_safetensors(staged_path(filename), tensors, metadata);
}

void CheckpointWriter::write_text(const std::string& filename, const std::string& text) {
  write_file(staged_path(filename), text);
}

std::string CheckpointWriter::commit(nlohmann::json manifest, const std::map<std::string, FileDigest>& sealed) {
  if (committed_) fail("{}: step {} is already committed", root_, step_);
  if (manifest.is_null()) manifest = nlohmann::json::object();
  if (!manifest.is_object()) fail("{}: the manifest must be a JSON object", staging_dir_);
  for (const char* key : {"format_version", "step", "files"}) {
    if (manifest.contains(key)) fail("{}: manifest key '{}' is reserved", staging_dir_, key);
  }

  // Files other processes sealed are named, not listed: a network file system's cached listing
  // of the staging directory may not show them yet.
  std::vector<std::string> names;
  for (const auto& [name, digest] : sealed) {
    if (!fs::exists((fs::path(staging_dir_) / name).string())) {
      fail("{}: {} was announced but is not in the staging directory", staging_dir_, name);
    }
    names.push_back(name);
  }
  std::error_code ec;
  for (fs::directory_iterator it(staging_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == kManifest || sealed.count(name)) continue;
    if (!it->is_regular_file(ec)) {
      fail("{}: {} is not a regular file; checkpoints hold plain files only", staging_dir_, name);
    }
    names.push_back(name);
  }
  if (ec) fail("{}: cannot list the staging directory: {}", staging_dir_, ec.message());
  std::sort(names.begin(), names.end());

  nlohmann::json files = nlohmann::json::object();
  for (const auto& name : names) {
    const auto given = sealed.find(name);
    const FileDigest digest =
        given != sealed.end() ? given->second : seal_file((fs::path(staging_dir_) / name).string());
    files[name] = {{"bytes", digest.bytes}, {"crc32", crc_hex(digest.crc32)}};
  }
  manifest["format_version"] = kFormatVersion;
  manifest["step"] = step_;
  manifest["files"] = std::move(files);

  // The manifest goes last: a directory that has one has all its files.
  const std::string manifest_path = (fs::path(staging_dir_) / kManifest).string();
  write_file(manifest_path, manifest.dump(2) + "\n");
  fsync_path(manifest_path, false);
  fsync_path(staging_dir_, true);

  const std::string final_dir = (fs::path(root_) / checkpoint_dir_name(step_)).string();
  replace_directory(staging_dir_, final_dir);
  committed_ = true;
  fsync_path(root_, true);
  return final_dir;
}

void replace_directory(const std::string& staging, const std::string& target) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(target, ec))) {
    rename_or_fail(staging, target);
    return;
  }
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(staging, ec);  // the old directory now; a leftover is removed on the next start
    return;
  }
  const std::string retired =
      hidden_dir(fs::path(target).parent_path().string(), kRetiredPrefix, fs::path(target).filename().string());
  const InUseScope retired_in_use(retired);
  remove_tree(retired);
  rename_or_fail(target, retired);
  if (std::rename(staging.c_str(), target.c_str()) != 0) {
    const int err = errno;
    std::rename(retired.c_str(), target.c_str());
    fail("cannot rename {} to {}: {}", staging, target, std::strerror(err));
  }
  fs::remove_all(retired, ec);
}

std::optional<std::string> latest_checkpoint(const std::string& root) {
  const auto found = complete_checkpoints(root);
  if (found.empty()) return std::nullopt;
  return found.back().second;
}

nlohmann::json verify_checkpoint(const std::string& dir, bool check_crcs) {
  const std::string manifest_path = (fs::path(dir) / kManifest).string();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: checkpoint directory not found", dir);
  if (!fs::exists(fs::symlink_status(manifest_path, ec))) {
    fail("{}: {} missing: the checkpoint is incomplete", dir, kManifest);
  }
  const nlohmann::json manifest = read_json_file(manifest_path);
  if (!manifest.is_object() || !manifest.contains("files") || !manifest["files"].is_object()) {
    fail("{}: {} has no \"files\" object", dir, kManifest);
  }

  // Sizes first: a missing or truncated file shows without reading gigabytes.
  std::vector<std::string> listed;
  for (const auto& [name, entry] : manifest["files"].items()) {
    std::optional<uint32_t> crc;
    if (entry.is_object() && entry.contains("crc32")) crc = parse_crc_hex(entry["crc32"]);
    if (!is_plain_filename(name) || !entry.is_object() || !entry.contains("bytes") ||
        !entry["bytes"].is_number_unsigned() || !crc) {
      fail("{}: {}: malformed entry for '{}': {}", dir, kManifest, shortened(name), shortened(entry.dump()));
    }
    const std::string path = (fs::path(dir) / name).string();
    const auto actual = fs::file_size(path, ec);
    if (ec) fail("{}: {}: {} (listed in {})", dir, name, ec.message(), kManifest);
    const auto expected = entry["bytes"].get<uint64_t>();
    if (actual != expected) {
      fail("{}: {}: size {} but the manifest says {} ({})", dir, name, actual, expected,
           actual < expected ? "truncated?" : "appended to?");
    }
    listed.push_back(name);
  }
  if (check_crcs) {
    for (const auto& name : listed) verify_checkpoint_file(dir, manifest, name);
  }
  return manifest;
}

void verify_checkpoint_file(const std::string& dir, const nlohmann::json& manifest, const std::string& name) {
  const auto& files = manifest.at("files");
  if (!files.contains(name)) fail("{}: {} is not listed in {}", dir, name, kManifest);
  const auto expected = parse_crc_hex(files[name].at("crc32"));
  const uint32_t actual = crc32_file((fs::path(dir) / name).string());
  CR_CHECK(expected, "{}: {} has a malformed crc32 (use the manifest verify_checkpoint returned)", dir, name);
  if (actual != *expected) {
    fail("{}: {}: crc32 mismatch (corrupted): {} but the manifest says {}", dir, name, crc_hex(actual),
         crc_hex(*expected));
  }
}

void prune_checkpoints(const std::string& root, int64_t keep, const std::string& run) {
  std::error_code ec;
  if (!fs::exists(root, ec)) return;
  std::vector<std::string> runs_checkpoints;
  for (const auto& [step, dir] : complete_checkpoints(root)) {
    if (checkpoint_run(dir) == run) runs_checkpoints.push_back(dir);
  }
  if (keep > 0 && runs_checkpoints.size() > static_cast<size_t>(keep)) {
    for (size_t i = 0; i + static_cast<size_t>(keep) < runs_checkpoints.size(); ++i) {
      // Renamed first, so that a crash mid-delete leaves no half-deleted step_* directory.
      const std::string retired =
          hidden_dir(root, kRetiredPrefix, fs::path(runs_checkpoints[i]).filename().string());
      const InUseScope retired_in_use(retired);
      remove_tree(retired);
      rename_or_fail(runs_checkpoints[i], retired);
      remove_tree(retired);
    }
  }

  const std::string suffix = pid_suffix();
  std::vector<std::string> leftovers;
  for (const std::string& path : hidden_directories(root)) {
    const std::string name = fs::path(path).filename().string();
    const bool ours = name.size() > suffix.size() &&
                      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (ours && !in_use(path)) leftovers.push_back(path);
  }
  for (const auto& path : leftovers) remove_tree(path);
}

std::vector<std::string> remove_interrupted_saves(const std::string& root) {
  std::vector<std::string> removed;
  for (const std::string& path : hidden_directories(root)) {
    if (in_use(path)) continue;
    remove_tree(path);
    removed.push_back(path);
  }
  return removed;
}

std::string checkpoint_run(const std::string& dir) {
  nlohmann::json manifest;
  try {
    manifest = read_json_file((fs::path(dir) / kManifest).string());
  } catch (const Error&) {
    return "";  // not a checkpoint of any run: never pruned
  }
  if (!manifest.is_object() || !manifest.contains(kRunKey) || !manifest[kRunKey].is_string()) return "";
  return manifest[kRunKey].get<std::string>();
}

}  // namespace cr
