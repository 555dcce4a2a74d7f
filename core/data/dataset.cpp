#include "core/data/dataset.h"

#include <glob.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "core/base/error.h"
#include "core/data/prepare.h"
#include "core/data/shards.h"
#include "core/base/strings.h"
#include "core/text/tokenizer.h"

namespace cr {
namespace {

// splitmix64's finalizer: a fast bijective 64-bit mixer.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t hash2(uint64_t a, uint64_t b) { return mix64(mix64(a) ^ b); }

// Domain tags keep the hashes of different uses of one seed unrelated.
constexpr uint64_t kShuffleTag = 0x73687566666c65ull;     // "shuffle"
constexpr uint64_t kSyntheticTrainTag = 0x747261696eull;  // "train"
constexpr uint64_t kSyntheticValTag = 0x76616cull;        // "val"
constexpr int64_t kSyntheticWindows = int64_t{1} << 40;   // no run gets through an epoch

}  // namespace

std::optional<std::pair<int64_t, int64_t>> TokenStream::first_at_or_above(int64_t limit) const {
  constexpr int64_t kChunk = 1 << 20;
  std::vector<int64_t> ids(static_cast<size_t>(std::min(kChunk, size())));
  for (int64_t offset = 0; offset < size(); offset += kChunk) {
    const int64_t count = std::min(kChunk, size() - offset);
    copy(offset, count, ids.data());
    const auto found = std::find_if(ids.begin(), ids.begin() + count, [&](int64_t id) { return id >= limit; });
    if (found != ids.begin() + count) return std::make_pair(offset + (found - ids.begin()), *found);
  }
  return std::nullopt;
}

namespace {

class ShardStream final : public TokenStream {
 public:
  explicit ShardStream(const std::string& path) : shard_(path) {}
  int64_t size() const override { return shard_.size(); }
  void copy(int64_t offset, int64_t count, int64_t* out) const override {
    shard_.copy(offset, count, out);
  }
  const std::string& name() const override { return shard_.path(); }

 private:
  TokenShard shard_;
};

class MemoryStream final : public TokenStream {
 public:
  MemoryStream(std::vector<uint32_t> tokens, std::string name)
      : tokens_(std::move(tokens)), name_(std::move(name)) {}
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  void copy(int64_t offset, int64_t count, int64_t* out) const override {
    CR_CHECK(offset >= 0 && count >= 0 && offset + count <= size(),
             "{}: tokens [{}, {}) out of range for {} tokens", name_, offset, offset + count,
             size());
    std::copy_n(tokens_.begin() + offset, count, out);
  }
  const std::string& name() const override { return name_; }

 private:
  std::vector<uint32_t> tokens_;
  std::string name_;
};

class SyntheticStream final : public TokenStream {
 public:
  SyntheticStream(uint64_t key, int64_t size, int64_t vocab_size, std::string name)
      : key_(key), size_(size), vocab_size_(vocab_size), name_(std::move(name)) {}
  int64_t size() const override { return size_; }
  void copy(int64_t offset, int64_t count, int64_t* out) const override {
    CR_CHECK(offset >= 0 && count >= 0 && offset + count <= size_,
             "{}: tokens [{}, {}) out of range", name_, offset, offset + count);
    for (int64_t i = 0; i < count; ++i) {
      // Multiply-shift maps the hash onto [0, vocab_size) without modulo's bias.
      const unsigned __int128 wide =
          static_cast<unsigned __int128>(hash2(key_, static_cast<uint64_t>(offset + i))) *
          static_cast<uint64_t>(vocab_size_);
      out[i] = static_cast<int64_t>(wide >> 64);
    }
  }
  const std::string& name() const override { return name_; }
  std::optional<std::pair<int64_t, int64_t>> first_at_or_above(int64_t limit) const override {
    CR_CHECK(vocab_size_ <= limit, "{}: synthetic ids below {} for a vocabulary of {}", name_, vocab_size_, limit);
    return std::nullopt;  // every id is below vocab_size_ by construction
  }

 private:
  uint64_t key_;
  int64_t size_;
  int64_t vocab_size_;
  std::string name_;
};

int64_t windows_in(int64_t stream_tokens, int64_t seq_len) {
  return stream_tokens > seq_len ? (stream_tokens - 1) / seq_len : 0;
}

// A keyed bijection of [0, size): a balanced Feistel network over the smallest even number of
// bits covering size, with cycle walking to stay inside [0, size). The Feistel domain is under
// 4 * size, so a position takes fewer than 4 network passes on average; no table is stored.
class WindowPermutation {
 public:
  WindowPermutation(int64_t size, uint64_t key) : size_(static_cast<uint64_t>(size)) {
    int bits = 0;
    while (bits < 63 && (uint64_t{1} << bits) < size_) ++bits;
    half_bits_ = std::max(1, (bits + 1) / 2);
    half_mask_ = (uint64_t{1} << half_bits_) - 1;
    for (size_t round = 0; round < round_keys_.size(); ++round) {
      round_keys_[round] = hash2(key, round);
    }
  }

  int64_t operator()(int64_t position) const {
    uint64_t x = static_cast<uint64_t>(position);
    do {
      x = encrypt(x);
    } while (x >= size_);
    return static_cast<int64_t>(x);
  }

 private:
  uint64_t encrypt(uint64_t x) const {
    uint64_t left = x >> half_bits_;
    uint64_t right = x & half_mask_;
    for (uint64_t round_key : round_keys_) {
      const uint64_t next_right = left ^ (hash2(round_key, right) & half_mask_);
      left = right;
      right = next_right;
    }
    return (left << half_bits_) | right;
  }

  uint64_t size_;
  int half_bits_ = 1;
  uint64_t half_mask_ = 1;
  std::array<uint64_t, 6> round_keys_{};
};

}  // namespace

std::shared_ptr<const TokenStream> open_shard_stream(const std::string& path) {
  return std::make_shared<const ShardStream>(path);
}

std::shared_ptr<const TokenStream> make_memory_stream(std::vector<uint32_t> tokens,
                                                      std::string name) {
  return std::make_shared<const MemoryStream>(std::move(tokens), std::move(name));
}

std::shared_ptr<const TokenStream> make_synthetic_stream(uint64_t key, int64_t size,
                                                         int64_t vocab_size, std::string name) {
  CR_CHECK(size >= 0 && vocab_size >= 1, "size {} vocab_size {}", size, vocab_size);
  return std::make_shared<const SyntheticStream>(key, size, vocab_size, std::move(name));
}

// The streams and, for each, the number of windows in it and all before it.
struct TokenCorpus::Layout {
  std::vector<std::shared_ptr<const TokenStream>> streams;
  std::vector<int64_t> windows_end;
};

TokenCorpus::TokenCorpus(std::vector<std::shared_ptr<const TokenStream>> streams, int64_t seq_len,
                         int64_t vocab_size)
    : seq_len_(seq_len), vocab_size_(vocab_size) {
  CR_CHECK(seq_len >= 1 && vocab_size >= 1, "seq_len {} vocab_size {}", seq_len, vocab_size);
  auto layout = std::make_shared<Layout>();
  int64_t windows = 0;
  for (auto& stream : streams) {
    CR_CHECK(stream != nullptr, "null token stream");
    // Checked once here, not when a window is read days into a run.
    if (const auto bad = stream->first_at_or_above(vocab_size)) {
      fail("{}: token id {} at offset {} is not below the model's vocab_size {} (data made with another "
           "tokenizer, or a vocab_size too small)",
           stream->name(), bad->second, bad->first, vocab_size);
    }
    windows += windows_in(stream->size(), seq_len);
    layout->windows_end.push_back(windows);
  }
  layout->streams = std::move(streams);
  layout_ = std::move(layout);
  count_ = windows;
}

TokenCorpus::TokenCorpus(std::shared_ptr<const Layout> layout, int64_t seq_len, int64_t vocab_size,
                         int64_t first, int64_t count)
    : layout_(std::move(layout)),
      seq_len_(seq_len),
      vocab_size_(vocab_size),
      first_(first),
      count_(count) {}

TokenCorpus TokenCorpus::slice(int64_t first, int64_t count) const {
  CR_CHECK(first >= 0 && count >= 0 && first + count <= count_,
           "windows [{}, {}) out of range for {} windows", first, first + count, count_);
  return TokenCorpus(layout_, seq_len_, vocab_size_, first_ + first, count);
}

void TokenCorpus::read_window(int64_t window, int64_t* out) const {
  CR_CHECK(window >= 0 && window < count_, "window {} out of range for {} windows", window, count_);
  const int64_t global = first_ + window;
  const auto& ends = layout_->windows_end;
  const size_t index = std::upper_bound(ends.begin(), ends.end(), global) - ends.begin();
  const int64_t windows_before = index == 0 ? 0 : ends[index - 1];
  const int64_t offset = (global - windows_before) * seq_len_;
  const TokenStream& stream = *layout_->streams[index];
  stream.copy(offset, seq_len_ + 1, out);
}

BatchSampler::BatchSampler(std::shared_ptr<const TokenCorpus> corpus, uint64_t seed, bool shuffle)
    : corpus_(std::move(corpus)), seed_(seed), shuffle_(shuffle) {
  CR_CHECK(corpus_ != nullptr, "null corpus");
  if (corpus_->num_windows() < 1) fail("cannot sample from a corpus with no windows");
}

int64_t BatchSampler::window_of(int64_t sample) const {
  CR_CHECK(sample >= 0, "negative sample index {}", sample);
  const int64_t windows = corpus_->num_windows();
  const int64_t epoch = sample / windows;
  const int64_t position = sample % windows;
  if (!shuffle_) return position;
  const uint64_t epoch_key = hash2(hash2(seed_, kShuffleTag), static_cast<uint64_t>(epoch));
  return WindowPermutation(windows, epoch_key)(position);
}

void BatchSampler::fill(int64_t first_sample, int64_t rows, int64_t* inputs,
                        int64_t* targets) const {
  const int64_t seq_len = corpus_->seq_len();
  std::vector<int64_t> window(static_cast<size_t>(seq_len + 1));
  for (int64_t row = 0; row < rows; ++row) {
    corpus_->read_window(window_of(first_sample + row), window.data());
    std::copy_n(window.begin(), seq_len, inputs + row * seq_len);
    std::copy_n(window.begin() + 1, seq_len, targets + row * seq_len);
  }
}

std::vector<std::string> expand_paths(const std::vector<std::string>& entries,
                                      const std::string& key) {
  std::vector<std::string> paths;
  for (const auto& entry : entries) {
    if (entry.find_first_of("*?[") == std::string::npos) {
      paths.push_back(entry);
      continue;
    }
    glob_t matches{};
    const int rc = ::glob(entry.c_str(), 0, nullptr, &matches);
    std::vector<std::string> found;
    if (rc == 0) found.assign(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
    ::globfree(&matches);
    if (rc == GLOB_NOMATCH) fail("{}: no file matches '{}'", key, entry);
    if (rc != 0) fail("{}: cannot expand '{}' (glob error {})", key, entry, rc);
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  return paths;
}


namespace {

std::string describe_files(const std::vector<std::string>& paths) {
  if (paths.size() == 1) return paths[0];
  return fmt::format("{} and {} more files", paths[0], paths.size() - 1);
}

struct OpenedStreams {
  std::vector<std::shared_ptr<const TokenStream>> streams;
  int64_t files = 0;
  int64_t tokens = 0;
  // For "too little data" messages: shards are separate streams, text files one stream.
  const char* boundary_note = "";
};

OpenedStreams open_streams(const Tokenizer* tokenizer, const std::vector<std::string>& entries,
                           const std::string& key) {
  // Only the commands that read data need it: `plan` and `generate` run without.
  if (entries.empty()) {
    fail("{} is empty: data.format {} reads files (paths or globs; data.format synthetic needs none)", key,
         tokenizer ? "text" : "tokens");
  }
  const std::vector<std::string> paths = expand_paths(entries, key);
  OpenedStreams opened;
  opened.files = static_cast<int64_t>(paths.size());
  if (tokenizer == nullptr) {
    opened.boundary_note = " (a window never spans two shards)";
    for (const auto& path : paths) {
      opened.streams.push_back(open_shard_stream(path));
      opened.tokens += opened.streams.back()->size();
    }
    return opened;
  }
  std::vector<uint32_t> tokens;
  for (const auto& path : paths) {
    if (&path != &paths.front()) tokens.push_back(tokenizer->eot_id());
    const std::vector<uint32_t> ids = encode_document(path, *tokenizer);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  opened.tokens = static_cast<int64_t>(tokens.size());
  opened.streams.push_back(make_memory_stream(
      std::move(tokens), fmt::format("{} tokens of {}", tokenizer->name(), describe_files(paths))));
  return opened;
}

// "1 file", "12 files"
std::string count_files(int64_t files) {
  return fmt::format("{} file{}", with_thousands(files), files == 1 ? "" : "s");
}

std::string describe_split(const OpenedStreams& opened, const char* format, int64_t windows,
                           int64_t window_tokens) {
  return fmt::format("{} data: {}, {} tokens, {} windows of {} tokens", format,
                     count_files(opened.files), with_thousands(opened.tokens),
                     with_thousands(windows), window_tokens);
}

void require_a_window(const OpenedStreams& opened, const TokenCorpus& corpus, const char* key) {
  if (corpus.num_windows() < 1) {
    fail("{}: too little data: {} tokens in {} give no window of {} tokens{}", key, opened.tokens,
         count_files(opened.files), corpus.seq_len() + 1, opened.boundary_note);
  }
}

DataSplits open_synthetic(const DataConfig& config, int64_t vocab_size, uint64_t seed) {
  const int64_t windows =
      std::min(kSyntheticWindows, (std::numeric_limits<int64_t>::max() - 1) / config.seq_len);
  const int64_t tokens = windows * config.seq_len + 1;
  auto corpus = [&](uint64_t tag, const char* split) {
    auto stream = make_synthetic_stream(hash2(seed, tag), tokens, vocab_size,
                                        fmt::format("synthetic {} stream (seed {})", split, seed));
    return std::make_shared<const TokenCorpus>(
        std::vector<std::shared_ptr<const TokenStream>>{std::move(stream)}, config.seq_len,
        vocab_size);
  };
  DataSplits splits;
  splits.train = corpus(kSyntheticTrainTag, "train");
  splits.val = corpus(kSyntheticValTag, "val");
  splits.description =
      fmt::format("synthetic: pseudo-random tokens in [0, {}), {} windows of {} tokens per split",
                  vocab_size, with_thousands(windows), config.seq_len + 1);
  return splits;
}

}  // namespace

int64_t held_out_count(double fraction, int64_t total) {
  if (fraction <= 0.0) return 0;
  const double share = std::ceil(fraction * static_cast<double>(total) - 1e-9);
  return std::max<int64_t>(1, static_cast<int64_t>(share));
}

DataSplits open_data(const DataConfig& config, int64_t vocab_size, uint64_t seed) {
  if (config.seq_len < 1) fail("data.seq_len: must be at least 1, got {}", config.seq_len);
  if (vocab_size < 1) fail("model.vocab_size: must be at least 1, got {}", vocab_size);
  if (!(config.val_fraction >= 0.0 && config.val_fraction < 1.0)) {
    fail("data.val_fraction: must be in [0, 1), got {}", config.val_fraction);
  }
  if (config.format == "synthetic") return open_synthetic(config, vocab_size, seed);
  if (config.format != "tokens" && config.format != "text") {
    fail("data.format: unknown '{}' (expected tokens, text or synthetic)", config.format);
  }

  std::unique_ptr<Tokenizer> tokenizer;
  if (config.format == "text") {
    tokenizer = make_tokenizer(config.tokenizer, config.tokenizer_dir);
    if (tokenizer->vocab_size() > vocab_size) {
      fail("data.tokenizer: the {} tokenizer has {} tokens but the model's vocab_size is {}",
           tokenizer->name(), tokenizer->vocab_size(), vocab_size);
    }
  }
  const int64_t window_tokens = config.seq_len + 1;
  const char* format = config.format == "text" ? "text" : "token shard";

  const OpenedStreams train = open_streams(tokenizer.get(), config.train, "data.train");
  TokenCorpus train_corpus(train.streams, config.seq_len, vocab_size);
  const int64_t windows = train_corpus.num_windows();

  DataSplits splits;
  if (!config.val.empty()) {
    const OpenedStreams val = open_streams(tokenizer.get(), config.val, "data.val");
    TokenCorpus val_corpus(val.streams, config.seq_len, vocab_size);
    require_a_window(train, train_corpus, "data.train");
    require_a_window(val, val_corpus, "data.val");
    splits.description =
        fmt::format("train: {}; val: {}", describe_split(train, format, windows, window_tokens),
                    describe_split(val, format, val_corpus.num_windows(), window_tokens));
    splits.train = std::make_shared<const TokenCorpus>(std::move(train_corpus));
    splits.val = std::make_shared<const TokenCorpus>(std::move(val_corpus));
    return splits;
  }

  const int64_t held_out = held_out_count(config.val_fraction, windows);
  if (windows - held_out < 1) {
    fail(
        "data.train: too little data: {} tokens in {} give {} windows of {} tokens{}; "
        "val_fraction {} holds out {}, leaving none for training",
        train.tokens, count_files(train.files), windows, window_tokens, train.boundary_note,
        config.val_fraction, held_out);
  }
  splits.description = describe_split(train, format, windows, window_tokens);
  if (held_out > 0) {
    splits.val =
        std::make_shared<const TokenCorpus>(train_corpus.slice(windows - held_out, held_out));
    splits.description += fmt::format("; train: the first {}, val: the last {} (val_fraction {})",
                                      with_thousands(windows - held_out), with_thousands(held_out),
                                      config.val_fraction);
  } else {
    splits.description += "; all for training, no val";
  }
  splits.train = std::make_shared<const TokenCorpus>(train_corpus.slice(0, windows - held_out));
  return splits;
}

}  // namespace cr
