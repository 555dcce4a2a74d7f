// Training data as windows of tokens, and the deterministic sample order over them.
// A corpus is a list of token streams (one per shard, or one per text corpus). A window is
// seq_len + 1 consecutive tokens of one stream; windows start every seq_len tokens and never
// cross a stream boundary. A sample is one window: its first seq_len tokens are the inputs and
// its last seq_len tokens the targets. See docs/data-formats.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/config.h"

namespace cr {

// Where a corpus reads tokens from. Reads are thread-safe.
class TokenStream {
 public:
  virtual ~TokenStream() = default;
  virtual int64_t size() const = 0;  // number of tokens
  // Widens tokens [offset, offset + count) into out.
  virtual void copy(int64_t offset, int64_t count, int64_t* out) const = 0;
  virtual const std::string& name() const = 0;  // a path, or what the stream is, for messages
  // The first token whose id is `limit` or more, as (offset, id); none when all are below.
  // Scans every token (through copy()) unless the stream knows its ids' bound.
  virtual std::optional<std::pair<int64_t, int64_t>> first_at_or_above(int64_t limit) const;
};

// A token shard file (core/shards.h), validated on open.
std::shared_ptr<const TokenStream> open_shard_stream(const std::string& path);
// Tokens held in memory, e.g. tokenized text.
std::shared_ptr<const TokenStream> make_memory_stream(std::vector<uint32_t> tokens,
                                                      std::string name);
// `size` pseudo-random tokens in [0, vocab_size): token i is a hash of (key, i).
std::shared_ptr<const TokenStream> make_synthetic_stream(uint64_t key, int64_t size,
                                                         int64_t vocab_size, std::string name);

class TokenCorpus {
 public:
  TokenCorpus(std::vector<std::shared_ptr<const TokenStream>> streams, int64_t seq_len,
              int64_t vocab_size);

  int64_t seq_len() const { return seq_len_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t num_windows() const { return count_; }

  // Writes the seq_len + 1 tokens of window `window` (0 <= window < num_windows()) to out.
  // Throws cr::Error naming the stream and offset if a token id is >= vocab_size.
  void read_window(int64_t window, int64_t* out) const;

  // Windows [first, first + count) as a corpus of their own; shares the streams.
  TokenCorpus slice(int64_t first, int64_t count) const;

 private:
  struct Layout;
  TokenCorpus(std::shared_ptr<const Layout> layout, int64_t seq_len, int64_t vocab_size,
              int64_t first, int64_t count);

  std::shared_ptr<const Layout> layout_;
  int64_t seq_len_ = 0;
  int64_t vocab_size_ = 0;
  int64_t first_ = 0;  // this corpus's window 0 is window first_ of the layout
  int64_t count_ = 0;
};

// How many of `total` windows (or tokens) a validation fraction holds out: ceil(fraction *
// total), at least 1 when fraction > 0; float error (0.07 * 100 = 7.000000000000001) is ignored.
int64_t held_out_count(double fraction, int64_t total);

struct DataSplits {
  std::shared_ptr<const TokenCorpus> train;
  std::shared_ptr<const TokenCorpus> val;  // null when there is no validation data
  std::string description;                 // one line for the run log
};

// Opens config.train and config.val (or holds out the last val_fraction of train's windows)
// in config.format: "tokens" (shard paths or globs), "text" (files tokenized with
// config.tokenizer, documents joined by the tokenizer's end-of-text id) or "synthetic"
// (hashed tokens from `seed`, effectively endless). Throws cr::Error naming the config key,
// file and counts when something is missing or too small.
DataSplits open_data(const DataConfig& config, int64_t vocab_size, uint64_t seed);

// Paths as given, with glob patterns expanded (each pattern's matches sorted); cr::Error naming
// `key` for a pattern that matches nothing.
std::vector<std::string> expand_paths(const std::vector<std::string>& entries, const std::string& key);

// The endless sample stream over a corpus. Sample k belongs to epoch k / W at position k % W
// (W = num_windows). With shuffle, position p of epoch e reads window perm_{seed,e}(p), where
// perm is a keyed bijection of [0, W) computed in O(1) memory; without, window p. Any batch is
// thus a pure function of (seed, sample index), which exact resume and data-parallel ranks
// reading sub-ranges of a global batch rely on. Thread-safe.
class BatchSampler {
 public:
  BatchSampler(std::shared_ptr<const TokenCorpus> corpus, uint64_t seed, bool shuffle);

  int64_t seq_len() const { return corpus_->seq_len(); }
  int64_t samples_per_epoch() const { return corpus_->num_windows(); }
  int64_t window_of(int64_t sample) const;

  // Samples first_sample .. first_sample + rows - 1 into row-major [rows, seq_len] buffers:
  // inputs are window tokens [0, seq_len), targets window tokens [1, seq_len].
  void fill(int64_t first_sample, int64_t rows, int64_t* inputs, int64_t* targets) const;

 private:
  std::shared_ptr<const TokenCorpus> corpus_;
  uint64_t seed_;
  bool shuffle_;
};

}  // namespace cr
