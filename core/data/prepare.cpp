#include "core/data/prepare.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "core/data/dataset.h"
#include "core/base/error.h"
#include "core/data/shards.h"

namespace cr {
namespace {

namespace fs = std::filesystem;

void validate(const PrepareOptions& options) {
  CR_CHECK(options.tokenizer != nullptr, "prepare_shards needs a tokenizer");
  if (options.inputs.empty()) fail("prepare: no input files");
  if (options.output_prefix.empty()) fail("prepare: the output prefix is empty");
  if (options.shard_tokens < 1 || options.shard_tokens > std::numeric_limits<int32_t>::max()) {
    fail("prepare: shard_tokens must be in [1, {}], got {}", std::numeric_limits<int32_t>::max(),
         options.shard_tokens);
  }
  if (!(options.val_fraction >= 0.0 && options.val_fraction < 1.0)) {
    fail("prepare: val_fraction must be in [0, 1), got {}", options.val_fraction);
  }
}

// Numbers and writes the shards of one split as their tokens become final.
class ShardWriter {
 public:
  ShardWriter(std::string prefix, std::string split, int64_t shard_tokens,
              std::vector<PreparedShard>& written)
      : prefix_(std::move(prefix)),
        split_(std::move(split)),
        shard_tokens_(shard_tokens),
        written_(written) {}

  // Writes tokens as shards of shard_tokens, and a last short one unless only_full.
  // Returns how many tokens were written.
  int64_t write(const uint32_t* tokens, int64_t count, bool only_full) {
    int64_t done = 0;
    while (count - done >= shard_tokens_ || (!only_full && count > done)) {
      const int64_t n = std::min(shard_tokens_, count - done);
      const std::string path = shard_path(prefix_, split_, static_cast<int64_t>(written_.size()));
      write_shard(path, tokens + done, n);
      written_.push_back({path, n});
      done += n;
    }
    return done;
  }

 private:
  std::string prefix_;
  std::string split_;
  int64_t shard_tokens_;
  std::vector<PreparedShard>& written_;
};

// Removes <prefix>_<split>_NNNNNN.bin from index `first` on, for as long as they exist.
void remove_stale_shards(const std::string& prefix, const std::string& split, int64_t first,
                         std::vector<std::string>& removed) {
  for (int64_t index = first;; ++index) {
    const std::string path = shard_path(prefix, split, index);
    std::error_code error;
    if (!fs::remove(path, error)) {
      if (error) fail("{}: cannot remove stale shard: {}", path, error.message());
      return;
    }
    removed.push_back(path);
  }
}

}  // namespace

std::string shard_path(const std::string& prefix, const std::string& split, int64_t index) {
  return fmt::format("{}_{}_{:06d}.bin", prefix, split, index);
}

std::vector<uint32_t> encode_document(const std::string& path, const Tokenizer& tokenizer) {
  std::error_code error;
  if (fs::is_directory(path, error)) fail("{}: is a directory; prepare takes text files (e.g. {}/*.txt)", path, path);
  // A pipe or a device could be read for ever.
  if (fs::exists(path, error) && !fs::is_regular_file(path, error)) fail("{}: not a regular file", path);
  std::ifstream file(path, std::ios::binary);
  if (!file) fail("{}: cannot read: {}", path, std::strerror(errno));
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) fail("{}: read failed", path);
  return tokenizer.encode(text.str());
}

PrepareReport prepare_shards(const PrepareOptions& options) {
  validate(options);
  const fs::path directory = fs::path(options.output_prefix).parent_path();
  if (!directory.empty()) {
    std::error_code error;
    fs::create_directories(directory, error);
    if (error) {
      fail("{}: cannot create the output directory: {}", directory.string(), error.message());
    }
  }

  PrepareReport report;
  ShardWriter train_writer(options.output_prefix, "train", options.shard_tokens, report.train);
  ShardWriter val_writer(options.output_prefix, "val", options.shard_tokens, report.val);

  // The val tail is unknown until the last document, but a prefix of the stream is surely train:
  // total - held_out_count(total) never decreases as total grows. Full train shards are written
  // as soon as they lie inside that prefix, so memory holds about the val tail plus one shard.
  std::vector<uint32_t> pending;  // tokens from absolute index `pending_start` on
  int64_t pending_start = 0;
  int64_t total = 0;
  for (const auto& input : options.inputs) {
    if (report.documents > 0) pending.push_back(options.tokenizer->eot_id());
    const std::vector<uint32_t> ids = encode_document(input, *options.tokenizer);
    pending.insert(pending.end(), ids.begin(), ids.end());
    ++report.documents;
    total = pending_start + static_cast<int64_t>(pending.size());

    const int64_t surely_train =
        std::max<int64_t>(0, total - held_out_count(options.val_fraction, total));
    const int64_t written =
        train_writer.write(pending.data(), surely_train - pending_start, /*only_full=*/true);
    pending.erase(pending.begin(), pending.begin() + written);
    pending_start += written;
  }

  if (total == 0) {
    fail("prepare: the inputs hold no tokens ({} {} empty)", fmt::join(options.inputs, ", "),
         options.inputs.size() == 1 ? "is" : "are all");
  }
  report.val_tokens = held_out_count(options.val_fraction, total);
  report.train_tokens = total - report.val_tokens;
  if (report.train_tokens < 1) {
    fail("prepare: too little data: {} tokens, and val_fraction {} holds out {}", total,
         options.val_fraction, report.val_tokens);
  }
  const int64_t train_left = report.train_tokens - pending_start;
  train_writer.write(pending.data(), train_left, /*only_full=*/false);
  val_writer.write(pending.data() + train_left, report.val_tokens, /*only_full=*/false);

  remove_stale_shards(options.output_prefix, "train", static_cast<int64_t>(report.train.size()),
                      report.removed);
  remove_stale_shards(options.output_prefix, "val", static_cast<int64_t>(report.val.size()),
                      report.removed);
  return report;
}

}  // namespace cr
