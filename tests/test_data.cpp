#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "tests/shared_data.h"
#include "tests/temp_dir.h"
#include "core/data/dataset.h"
#include "core/base/error.h"
#include "core/data/prepare.h"
#include "core/data/shard_tokenizer.h"
#include "core/data/shards.h"
#include "core/text/tokenizer.h"

namespace fs = std::filesystem;
using namespace cr;

namespace {

using cr::test::TempDir;

// A file with the given header ints (the rest of the 256 zero) and payload_bytes zero bytes.
void write_raw_shard(const std::string& path, std::vector<int32_t> header_ints,
                     int64_t payload_bytes) {
  header_ints.resize(kShardHeaderInts, 0);
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(header_ints.data()), kShardHeaderBytes);
  const std::vector<char> payload(static_cast<size_t>(payload_bytes), 0);
  file.write(payload.data(), payload_bytes);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

std::vector<int64_t> read_all(const TokenShard& shard) {
  std::vector<int64_t> tokens(static_cast<size_t>(shard.size()));
  shard.copy(0, shard.size(), tokens.data());
  return tokens;
}

std::vector<int64_t> window_tokens(const TokenCorpus& corpus, int64_t window) {
  std::vector<int64_t> tokens(static_cast<size_t>(corpus.seq_len() + 1));
  corpus.read_window(window, tokens.data());
  return tokens;
}

// Shard i holds tokens i*100, i*100+1, ...: a window's source is visible in its values.
std::vector<uint32_t> numbered_tokens(uint32_t shard, int64_t count) {
  std::vector<uint32_t> tokens;
  for (int64_t j = 0; j < count; ++j) tokens.push_back(shard * 100 + static_cast<uint32_t>(j));
  return tokens;
}

// A corpus of `windows` windows of seq_len 1 whose window w is [w, w + 1].
std::shared_ptr<const TokenCorpus> counting_corpus(int64_t windows, int64_t vocab_size) {
  std::vector<uint32_t> tokens;
  for (int64_t i = 0; i <= windows; ++i) tokens.push_back(static_cast<uint32_t>(i));
  return std::make_shared<const TokenCorpus>(
      std::vector<std::shared_ptr<const TokenStream>>{make_memory_stream(tokens, "counting")}, 1,
      vocab_size);
}

DataConfig tokens_config(std::vector<std::string> train, int64_t seq_len, double val_fraction) {
  DataConfig config;
  config.format = "tokens";
  config.train = std::move(train);
  config.seq_len = seq_len;
  config.val_fraction = val_fraction;
  return config;
}

std::vector<uint32_t> concatenated_shards(const std::vector<PreparedShard>& shards) {
  std::vector<uint32_t> tokens;
  for (const auto& prepared : shards) {
    TokenShard shard(prepared.path);
    REQUIRE(shard.size() == prepared.tokens);
    for (int64_t id : read_all(shard)) tokens.push_back(static_cast<uint32_t>(id));
  }
  return tokens;
}

}  // namespace

TEST_CASE("shards round trip in the uint16 format", "[shards]") {
  TempDir dir;
  const std::string path = dir.file("small.bin");
  const std::vector<uint32_t> tokens = {0, 1, 2, 50256, 65535, 7};
  write_shard(path, tokens);

  CHECK(fs::file_size(path) == static_cast<uintmax_t>(kShardHeaderBytes + 2 * tokens.size()));
  CHECK_FALSE(fs::exists(path + ".tmp"));
  TokenShard shard(path);
  CHECK(shard.path() == path);
  CHECK(shard.size() == 6);
  CHECK(shard.token_bytes() == 2);
  CHECK(read_all(shard) == std::vector<int64_t>{0, 1, 2, 50256, 65535, 7});
  std::vector<int64_t> middle(2);
  shard.copy(3, 2, middle.data());
  CHECK(middle == std::vector<int64_t>{50256, 65535});

  // Regression: a shard truncated under a running job (a dataset rewritten in place) crashed the
  // reader with SIGBUS; now the read fails naming the file.
  {
    const std::string rewritten = dir.file("rewritten.bin");
    write_shard(rewritten, std::vector<uint32_t>{1, 2, 3, 70000});  // uint32 tokens
    TokenShard open_shard(rewritten);
    fs::resize_file(rewritten, kShardHeaderBytes + 4);
    std::vector<int64_t> first(1);
    open_shard.copy(0, 1, first.data());
    CHECK(first[0] == 1);
    std::vector<int64_t> rest(3);
    CHECK_THROWS_WITH(open_shard.copy(1, 3, rest.data()),
                      rewritten + ": token shard ends at byte 1028, but held 1040 bytes when opened: was it "
                                  "truncated or rewritten during the run?");
  }

  const std::string bytes = read_bytes(path);
  int32_t header[3];
  std::memcpy(header, bytes.data(), sizeof(header));
  CHECK(header[0] == kShardMagicU16);
  CHECK(header[1] == kShardVersionU16);
  CHECK(header[2] == 6);
}

TEST_CASE("an id of 65536 or more forces the uint32 format", "[shards]") {
  TempDir dir;
  const std::string path = dir.file("wide.bin");
  const std::vector<uint32_t> tokens = {3, 65536, 4000000000u, 0};
  write_shard(path, tokens);

  CHECK(fs::file_size(path) == static_cast<uintmax_t>(kShardHeaderBytes + 4 * tokens.size()));
  TokenShard shard(path);
  CHECK(shard.token_bytes() == 4);
  CHECK(read_all(shard) == std::vector<int64_t>{3, 65536, 4000000000LL, 0});
  int32_t magic_version[2];
  std::memcpy(magic_version, read_bytes(path).data(), sizeof(magic_version));
  CHECK(magic_version[0] == kShardMagicU32);
  CHECK(magic_version[1] == kShardVersionU32);
}

TEST_CASE("an empty shard round trips", "[shards]") {
  TempDir dir;
  const std::string path = dir.file("empty.bin");
  write_shard(path, std::vector<uint32_t>{});
  TokenShard shard(path);
  CHECK(shard.size() == 0);
  CHECK(fs::file_size(path) == static_cast<uintmax_t>(kShardHeaderBytes));
}

TEST_CASE("invalid shards fail with the path and the problem", "[shards]") {
  TempDir dir;
  auto open_error = [](const std::string& path) {
    try {
      TokenShard shard(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    FAIL("opening " << path << " did not throw");
    return std::string();
  };
  using Catch::Matchers::Contains;

  SECTION("bad magic") {
    const std::string path = dir.file("magic.bin");
    write_raw_shard(path, {123, 1, 0}, 0);
    const std::string message = open_error(path);
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains("bad magic 123 (expected 20240520 or 20240801)"));
  }
  SECTION("version that does not match the magic") {
    const std::string path = dir.file("version.bin");
    write_raw_shard(path, {kShardMagicU16, 3, 0}, 0);
    const std::string message = open_error(path);
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains("version 3 does not match magic 20240520"));
    write_raw_shard(path, {kShardMagicU32, 1, 0}, 0);
    CHECK_THAT(open_error(path), Contains("version 1 does not match magic 20240801"));
  }
  SECTION("token count that disagrees with the file size") {
    const std::string path = dir.file("count.bin");
    write_raw_shard(path, {kShardMagicU16, 1, 10}, 18);
    const std::string message = open_error(path);
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains("header says 10 tokens but the file holds 9"));
    write_raw_shard(path, {kShardMagicU32, 7, 2}, 12);
    CHECK_THAT(open_error(path), Contains("header says 2 tokens but the file holds 3"));
  }
  SECTION("file shorter than the header") {
    const std::string path = dir.file("short.bin");
    write_text(path, std::string(100, 'x'));
    const std::string message = open_error(path);
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains("file shorter than the 1024-byte header"));
  }
  SECTION("a FIFO in place of the file") {
    // Regression: opening a FIFO waited for a writer for ever.
    const std::string path = dir.file("fifo.bin");
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const std::string message = open_error(path);
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains("not a regular file"));
  }
  SECTION("missing file") {
    const std::string path = dir.file("missing.bin");
    const std::string message = open_error(path);
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains("No such file"));
  }
}

TEST_CASE("windows never cross shard boundaries", "[corpus]") {
  TempDir dir;
  // seq_len 4, windows of 5 tokens starting every 4: 10 tokens give 2 windows (offsets 0 and
  // 4), 4 tokens give none, 9 tokens give 2.
  const std::vector<int64_t> sizes = {10, 4, 9};
  std::vector<std::shared_ptr<const TokenStream>> streams;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string path = dir.file(fmt::format("s{}.bin", i));
    write_shard(path, numbered_tokens(static_cast<uint32_t>(i), sizes[i]));
    streams.push_back(open_shard_stream(path));
  }
  const TokenCorpus corpus(streams, 4, 1000);
  REQUIRE(corpus.num_windows() == 4);
  CHECK(corpus.seq_len() == 4);
  CHECK(window_tokens(corpus, 0) == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(window_tokens(corpus, 1) == std::vector<int64_t>{4, 5, 6, 7, 8});
  CHECK(window_tokens(corpus, 2) == std::vector<int64_t>{200, 201, 202, 203, 204});
  CHECK(window_tokens(corpus, 3) == std::vector<int64_t>{204, 205, 206, 207, 208});

  const TokenCorpus tail = corpus.slice(1, 2);
  REQUIRE(tail.num_windows() == 2);
  CHECK(window_tokens(tail, 0) == window_tokens(corpus, 1));
  CHECK(window_tokens(tail, 1) == window_tokens(corpus, 2));

  // A stream of exactly seq_len + 1 tokens holds one window; seq_len tokens none.
  const TokenCorpus exact({make_memory_stream(numbered_tokens(0, 5), "five")}, 4, 1000);
  const TokenCorpus short_of_one({make_memory_stream(numbered_tokens(0, 4), "four")}, 4, 1000);
  CHECK(exact.num_windows() == 1);
  CHECK(short_of_one.num_windows() == 0);
}

TEST_CASE("a token id at or above vocab_size fails on opening, with the shard and offset", "[corpus]") {
  // Regression: an id past the first batches trained without complaint until read.
  TempDir dir;
  const std::string path = dir.file("big_ids.bin");
  std::vector<uint32_t> tokens(3 << 20, 7);  // beyond the scan's first chunk
  tokens[(3 << 20) - 2] = 300;
  write_shard(path, tokens);
  try {
    const TokenCorpus corpus({open_shard_stream(path)}, 4, 257);
    FAIL("no error for token id 300");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Matchers::Contains(path));
    CHECK_THAT(message, Catch::Matchers::Contains("token id 300 at offset " + std::to_string((3 << 20) - 2)));
    CHECK_THAT(message, Catch::Matchers::Contains("vocab_size 257"));
  }
  CHECK_NOTHROW(TokenCorpus({open_shard_stream(path)}, 4, 301));
  CHECK_THROWS_WITH(TokenCorpus({make_memory_stream({1, 2, 512}, "text")}, 1, 512),
                    Catch::Matchers::Contains("text: token id 512 at offset 2"));
}

TEST_CASE("the sampler is a pure function of seed and sample index", "[sampler]") {
  const auto corpus = counting_corpus(50, 1000);
  const BatchSampler a(corpus, 7, true);
  const BatchSampler b(corpus, 7, true);
  const BatchSampler other_seed(corpus, 8, true);

  std::vector<int64_t> inputs_a(8), targets_a(8), inputs_b(8), targets_b(8);
  a.fill(13, 8, inputs_a.data(), targets_a.data());
  b.fill(13, 8, inputs_b.data(), targets_b.data());
  CHECK(inputs_a == inputs_b);
  CHECK(targets_a == targets_b);

  std::vector<int64_t> order_a, order_other;
  for (int64_t k = 0; k < 50; ++k) {
    order_a.push_back(a.window_of(k));
    order_other.push_back(other_seed.window_of(k));
  }
  CHECK(order_a != order_other);

  // A rank reading a sub-range of a global batch sees the same rows as the whole batch.
  std::vector<int64_t> global_inputs(16), global_targets(16), part_inputs(4), part_targets(4);
  a.fill(96, 16, global_inputs.data(), global_targets.data());
  a.fill(104, 4, part_inputs.data(), part_targets.data());
  CHECK(std::equal(part_inputs.begin(), part_inputs.end(), global_inputs.begin() + 8));
  CHECK(std::equal(part_targets.begin(), part_targets.end(), global_targets.begin() + 8));
}

TEST_CASE("shuffling visits every window exactly once per epoch", "[sampler]") {
  for (int64_t windows : {1, 2, 3, 37, 64, 65, 1000}) {
    CAPTURE(windows);
    const BatchSampler sampler(counting_corpus(windows, 2000), 12345, true);
    REQUIRE(sampler.samples_per_epoch() == windows);
    std::vector<int64_t> epoch0, epoch1;
    for (int64_t k = 0; k < windows; ++k) epoch0.push_back(sampler.window_of(k));
    for (int64_t k = windows; k < 2 * windows; ++k) epoch1.push_back(sampler.window_of(k));
    for (auto* epoch : {&epoch0, &epoch1}) {
      std::vector<int64_t> sorted = *epoch;
      std::sort(sorted.begin(), sorted.end());
      bool is_permutation = true;
      for (int64_t i = 0; i < windows; ++i) is_permutation &= sorted[i] == i;
      CHECK(is_permutation);
    }
    if (windows >= 37) {
      CHECK(epoch0 != epoch1);  // each epoch has its own order
      std::vector<int64_t> identity(static_cast<size_t>(windows));
      for (int64_t i = 0; i < windows; ++i) identity[i] = i;
      CHECK(epoch0 != identity);
    }
  }
}

// The sample order and synthetic tokens are part of the data format (docs/data-formats.md):
// these values, computed from the documented algorithm, change only with the format.
TEST_CASE("the shuffle order and synthetic tokens match the documented algorithm", "[format]") {
  const BatchSampler sampler(counting_corpus(10, 100), 42, true);
  std::vector<int64_t> order;
  for (int64_t k = 0; k < 20; ++k) order.push_back(sampler.window_of(k));
  CHECK(order == std::vector<int64_t>{6, 9, 4, 1, 5, 3, 0, 7, 8, 2, 4, 1, 5, 8, 3, 2, 9, 7, 6, 0});

  DataConfig config;
  config.format = "synthetic";
  config.seq_len = 4;
  const DataSplits splits = open_data(config, 50257, 42);
  CHECK(window_tokens(*splits.train, 0) == std::vector<int64_t>{48332, 5006, 27406, 23527, 35090});
  CHECK(window_tokens(*splits.val, 0) == std::vector<int64_t>{37935, 28459, 46921, 35791, 46396});
}

TEST_CASE("targets are the inputs shifted by one", "[sampler]") {
  TempDir dir;
  const std::string path = dir.file("t.bin");
  write_shard(path, numbered_tokens(1, 41));
  const auto corpus = std::make_shared<const TokenCorpus>(
      std::vector<std::shared_ptr<const TokenStream>>{open_shard_stream(path)}, 8, 1000);
  REQUIRE(corpus->num_windows() == 5);

  for (bool shuffle : {false, true}) {
    const BatchSampler sampler(corpus, 3, shuffle);
    const int64_t rows = 7;  // crosses the epoch boundary at sample 5
    std::vector<int64_t> inputs(rows * 8), targets(rows * 8);
    sampler.fill(0, rows, inputs.data(), targets.data());
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t window = sampler.window_of(row);
      if (!shuffle) CHECK(window == row % 5);
      for (int64_t t = 0; t < 8; ++t) {
        CHECK(inputs[row * 8 + t] == 100 + window * 8 + t);
        CHECK(targets[row * 8 + t] == 100 + window * 8 + t + 1);
      }
    }
  }
}

TEST_CASE("held-out counts round up", "[split]") {
  CHECK(held_out_count(0.0, 100) == 0);
  CHECK(held_out_count(0.07, 100) == 7);
  CHECK(held_out_count(0.05, 101) == 6);
  CHECK(held_out_count(0.25, 8) == 2);
  CHECK(held_out_count(0.01, 3) == 1);
}

TEST_CASE("val is the last val_fraction of train's windows unless given", "[split]") {
  TempDir dir;
  // seq_len 4: 21 tokens give 5 windows, 13 give 3; 8 windows in all.
  write_shard(dir.file("a_000.bin"), numbered_tokens(0, 21));
  write_shard(dir.file("a_001.bin"), numbered_tokens(1, 13));
  const std::string pattern = dir.file("a_*.bin");

  SECTION("a fraction holds out the last windows") {
    const DataSplits splits = open_data(tokens_config({pattern}, 4, 0.25), 1000, 0);
    REQUIRE(splits.val != nullptr);
    CHECK(splits.train->num_windows() == 6);
    CHECK(splits.val->num_windows() == 2);
    CHECK(window_tokens(*splits.train, 5) == std::vector<int64_t>{100, 101, 102, 103, 104});
    CHECK(window_tokens(*splits.val, 0) == std::vector<int64_t>{104, 105, 106, 107, 108});
    CHECK(window_tokens(*splits.val, 1) == std::vector<int64_t>{108, 109, 110, 111, 112});
    CHECK_FALSE(splits.description.empty());
  }
  SECTION("a fraction rounds up") {
    const DataSplits splits = open_data(tokens_config({pattern}, 4, 0.05), 1000, 0);
    CHECK(splits.train->num_windows() == 7);
    CHECK(splits.val->num_windows() == 1);
  }
  SECTION("no fraction, no val") {
    const DataSplits splits = open_data(tokens_config({pattern}, 4, 0.0), 1000, 0);
    CHECK(splits.val == nullptr);
    CHECK(splits.train->num_windows() == 8);
  }
  SECTION("explicit val files") {
    write_shard(dir.file("v.bin"), numbered_tokens(5, 9));
    DataConfig config = tokens_config({pattern}, 4, 0.25);
    config.val = {dir.file("v.bin")};
    const DataSplits splits = open_data(config, 1000, 0);
    CHECK(splits.train->num_windows() == 8);
    REQUIRE(splits.val != nullptr);
    CHECK(splits.val->num_windows() == 2);
    CHECK(window_tokens(*splits.val, 0)[0] == 500);
  }
  SECTION("glob matches are sorted and listed paths keep their order") {
    const DataSplits splits =
        open_data(tokens_config({dir.file("a_001.bin"), pattern}, 4, 0.0), 1000, 0);
    CHECK(splits.train->num_windows() == 3 + 8);
    CHECK(window_tokens(*splits.train, 0)[0] == 100);
    CHECK(window_tokens(*splits.train, 3)[0] == 0);
    CHECK(window_tokens(*splits.train, 8)[0] == 100);
  }
  SECTION("too little data names the counts") {
    try {
      open_data(tokens_config({dir.file("a_001.bin")}, 4, 0.9), 1000, 0);
      FAIL("no error");
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Catch::Matchers::Contains("too little data"));
      CHECK_THAT(message,
                 Catch::Matchers::Contains("13 tokens in 1 file give 3 windows of 5 tokens"));
    }
    CHECK_THROWS_WITH(open_data(tokens_config({dir.file("a_001.bin")}, 16, 0.0), 1000, 0),
                      Catch::Matchers::Contains("give 0 windows of 17 tokens"));
    DataConfig config = tokens_config({pattern}, 16, 0.0);
    config.val = {dir.file("a_001.bin")};
    CHECK_THROWS_WITH(open_data(config, 1000, 0),
                      Catch::Matchers::Contains("data.val: too little data: 13 tokens in 1 file "
                                                "give no window of 17 tokens"));
  }
}

TEST_CASE("a pattern matching nothing is an error", "[split]") {
  TempDir dir;
  const std::string pattern = dir.file("nothing_*.bin");
  CHECK_THROWS_WITH(open_data(tokens_config({pattern}, 4, 0.0), 1000, 0),
                    "data.train: no file matches '" + pattern + "'");
  write_shard(dir.file("t.bin"), numbered_tokens(0, 20));
  DataConfig config = tokens_config({dir.file("t.bin")}, 4, 0.0);
  config.val = {pattern};
  CHECK_THROWS_WITH(open_data(config, 1000, 0), "data.val: no file matches '" + pattern + "'");
  // The config accepts an empty data.train (plan and generate read no data); opening it says what is missing.
  CHECK_THROWS_WITH(open_data(tokens_config({}, 4, 0.0), 1000, 0),
                    "data.train is empty: data.format tokens reads files (paths or globs; data.format synthetic needs "
                    "none)");
}

TEST_CASE("synthetic data is deterministic and inside the vocabulary", "[synthetic]") {
  DataConfig config;
  config.format = "synthetic";
  config.seq_len = 16;
  const DataSplits a = open_data(config, 97, 42);
  const DataSplits b = open_data(config, 97, 42);
  const DataSplits other = open_data(config, 97, 43);
  REQUIRE(a.val != nullptr);
  CHECK(a.train->num_windows() >= (int64_t{1} << 30));
  CHECK(a.val->num_windows() >= (int64_t{1} << 30));

  std::set<int64_t> seen;
  for (int64_t window : {int64_t{0}, int64_t{1}, int64_t{123456789}, a.train->num_windows() - 1}) {
    const auto tokens = window_tokens(*a.train, window);
    CHECK(tokens == window_tokens(*b.train, window));
    CHECK(tokens != window_tokens(*other.train, window));
    CHECK(tokens != window_tokens(*a.val, window));
    for (int64_t id : tokens) {
      CHECK(id >= 0);
      CHECK(id < 97);
      seen.insert(id);
    }
  }
  CHECK(seen.size() > 30);  // spread over the vocabulary, not a constant

  const BatchSampler sampler(a.train, 42, true);
  std::vector<int64_t> inputs(4 * 16), targets(4 * 16);
  sampler.fill(1000000, 4, inputs.data(), targets.data());
  CHECK(std::equal(inputs.begin() + 1, inputs.begin() + 16, targets.begin()));
}

TEST_CASE("text data is tokenized, joined by end-of-text, and checked", "[text]") {
  TempDir dir;
  write_text(dir.file("one.txt"), "hello");
  write_text(dir.file("two.txt"), "world!");
  DataConfig config;
  config.format = "text";
  config.tokenizer = "byte";
  config.train = {dir.file("*.txt")};
  config.seq_len = 3;
  config.val_fraction = 0.0;
  // "hello" <eot> "world!": 12 tokens, windows of 4 every 3: 3 windows.
  const DataSplits splits = open_data(config, 257, 0);
  REQUIRE(splits.train->num_windows() == 3);
  CHECK(window_tokens(*splits.train, 1) == std::vector<int64_t>{'l', 'o', 256, 'w'});

  CHECK_THROWS_WITH(
      open_data(config, 200, 0),
      Catch::Matchers::Contains("tokenizer has 257 tokens but the model's vocab_size is 200"));
  config.train = {dir.file("missing.txt")};
  CHECK_THROWS_WITH(open_data(config, 257, 0), Catch::Matchers::Contains(dir.file("missing.txt")));
}

TEST_CASE("prepare writes shards that decode to the documents joined by end-of-text", "[prepare]") {
  TempDir dir;
  const std::string first = "First document.\nWith two lines.\n";
  const std::string second = "Second: caf\xc3\xa9, na\xc3\xafve.";
  const std::string third = "3";
  write_text(dir.file("a.txt"), first);
  write_text(dir.file("b.txt"), second);
  write_text(dir.file("c.txt"), third);
  const auto tokenizer = make_byte_tokenizer();

  PrepareOptions options;
  options.inputs = {dir.file("a.txt"), dir.file("b.txt"), dir.file("c.txt")};
  options.output_prefix = dir.file("out/nested/corpus");
  options.tokenizer = tokenizer.get();
  options.shard_tokens = 7;
  options.val_fraction = 0.2;
  const PrepareReport report = prepare_shards(options);

  const int64_t total = static_cast<int64_t>(first.size() + second.size() + third.size() + 2);
  CHECK(report.documents == 3);
  CHECK(report.val_tokens == held_out_count(0.2, total));
  CHECK(report.train_tokens + report.val_tokens == total);
  REQUIRE(!report.train.empty());
  REQUIRE(!report.val.empty());
  CHECK(report.train[0].path == dir.file("out/nested/corpus_train_000000.bin"));
  CHECK(report.val[0].path == dir.file("out/nested/corpus_val_000000.bin"));
  for (const auto* split : {&report.train, &report.val}) {
    for (size_t i = 0; i < split->size(); ++i) {
      CHECK((*split)[i].tokens <= 7);
      if (i + 1 < split->size()) CHECK((*split)[i].tokens == 7);
    }
  }

  std::vector<uint32_t> tokens = concatenated_shards(report.train);
  CHECK(static_cast<int64_t>(tokens.size()) == report.train_tokens);
  const std::vector<uint32_t> val = concatenated_shards(report.val);
  tokens.insert(tokens.end(), val.begin(), val.end());
  const std::string eot = tokenizer->decode({tokenizer->eot_id()});
  CHECK(tokenizer->decode(tokens) == first + eot + second + eot + third);

  // Fewer, larger shards the second time: the first run's extra shards go away.
  const size_t first_run_train_shards = report.train.size();
  options.shard_tokens = 1000;
  options.val_fraction = 0.0;
  const PrepareReport again = prepare_shards(options);
  CHECK(again.train.size() == 1);
  CHECK(again.val.empty());
  CHECK(again.removed.size() == first_run_train_shards - 1 + report.val.size());
  CHECK_FALSE(fs::exists(dir.file("out/nested/corpus_train_000001.bin")));
  CHECK_FALSE(fs::exists(dir.file("out/nested/corpus_val_000000.bin")));
  CHECK(tokenizer->decode(concatenated_shards(again.train)) == first + eot + second + eot + third);
}

TEST_CASE("prepare rejects bad options", "[prepare]") {
  TempDir dir;
  const auto tokenizer = make_byte_tokenizer();
  PrepareOptions options;
  options.output_prefix = dir.file("x");
  options.tokenizer = tokenizer.get();
  CHECK_THROWS_WITH(prepare_shards(options), Catch::Matchers::Contains("no input files"));
  options.inputs = {dir.file("absent.txt")};
  CHECK_THROWS_WITH(prepare_shards(options), Catch::Matchers::Contains(dir.file("absent.txt")));
  write_text(dir.file("empty.txt"), "");
  options.inputs = {dir.file("empty.txt")};
  // Regression: empty inputs and directories were not named.
  CHECK_THROWS_WITH(prepare_shards(options),
                    "prepare: the inputs hold no tokens (" + dir.file("empty.txt") + " is empty)");
  options.inputs = {dir.path().string()};
  CHECK_THROWS_WITH(prepare_shards(options), Catch::Matchers::StartsWith(dir.path().string() + ": is a directory"));
  options.inputs = {"/dev/null"};
  CHECK_THROWS_WITH(prepare_shards(options), "/dev/null: not a regular file");
  write_text(dir.file("one.txt"), "a");
  options.inputs = {dir.file("one.txt")};
  options.val_fraction = 0.5;
  CHECK_THROWS_WITH(prepare_shards(options), Catch::Matchers::Contains("too little data"));
}

TEST_CASE("tinyshakespeare prepares into byte-level shards", "[prepare][shared]") {
  const fs::path text_path = fs::path(CR_SHARED_DATA) / "tinyshakespeare.txt";
  if (!cr::test::shared_data_present({text_path})) return;
  TempDir dir;
  const auto tokenizer = make_byte_tokenizer();
  PrepareOptions options;
  options.inputs = {text_path.string()};
  options.output_prefix = dir.file("tiny");
  options.tokenizer = tokenizer.get();
  options.shard_tokens = 400000;
  options.val_fraction = 0.1;
  const PrepareReport report = prepare_shards(options);

  const int64_t file_bytes = static_cast<int64_t>(fs::file_size(text_path));
  const int64_t total = report.train_tokens + report.val_tokens;
  CHECK((total == file_bytes || total == file_bytes + 1));
  CHECK(report.train.size() == 3);
  CHECK(report.val.size() == 1);

  const DataSplits splits =
      open_data(tokens_config({dir.file("tiny_train_*.bin")}, 256, 0.0), 257, 0);
  CHECK(splits.train->num_windows() > 3000);
  const auto window = window_tokens(*splits.train, 0);
  const std::vector<uint32_t> ids(window.begin(), window.end());
  CHECK(tokenizer->decode(ids) == read_bytes(text_path.string()).substr(0, 257));
}

TEST_CASE("shards carry their tokenizer: a config that names none takes it, one that names another is refused",
          "[prepare][shared]") {
  const fs::path text_path = fs::path(CR_SHARED_DATA) / "tinyshakespeare.txt";
  const fs::path encoder = fs::path(CR_SHARED_DATA) / "gpt2-encoder.json";
  const fs::path merges = fs::path(CR_SHARED_DATA) / "gpt2-vocab.bpe";
  if (!cr::test::shared_data_present({text_path, encoder, merges})) return;
  TempDir dir;
  // The GPT-2 files under the names prepare's --tokenizer-dir accepts.
  fs::create_directories(dir.path() / "gpt2");
  fs::copy_file(encoder, dir.path() / "gpt2" / "encoder.json");
  fs::copy_file(merges, dir.path() / "gpt2" / "vocab.bpe");
  const auto tokenizer = make_tokenizer("gpt2", dir.file("gpt2"));
  std::ifstream in(text_path);
  const std::string text = std::string(std::istreambuf_iterator<char>(in), {}).substr(0, 20000);
  write_text(dir.file("doc.txt"), text);
  PrepareOptions options;
  options.inputs = {dir.file("doc.txt")};
  options.output_prefix = dir.file("shards/tiny");
  options.tokenizer = tokenizer.get();
  prepare_shards(options);
  write_shard_tokenizer(options.output_prefix, {"gpt2", dir.file("gpt2"), tokenizer->vocab_size(), ""});

  DataConfig data;
  data.format = "tokens";
  data.train = {dir.file("shards/tiny_train_*.bin")};
  const auto found = find_shard_tokenizer(data.train);
  REQUIRE(found);
  CHECK(found->kind == "gpt2");
  CHECK(found->dir == fs::absolute(dir.file("gpt2")).lexically_normal().string());
  CHECK(found->vocab_size == 50257);
  CHECK_THAT(adopt_shard_tokenizer(data), Catch::Contains("data.tokenizer gpt2 (data.tokenizer_dir "));
  CHECK(data.tokenizer == "gpt2");
  CHECK(data.tokenizer_dir == found->dir);
  // The adopted tokenizer reads the shards' ids back into the text.
  const auto stream = open_shard_stream(dir.file("shards/tiny_train_000000.bin"));
  std::vector<int64_t> ids(static_cast<size_t>(stream->size()));
  stream->copy(0, stream->size(), ids.data());
  const auto adopted = make_tokenizer(data.tokenizer, data.tokenizer_dir);
  CHECK(adopted->decode(std::vector<uint32_t>(ids.begin(), ids.end())) == text);
  // Naming the same kind is fine; another kind is refused, naming the record.
  CHECK(adopt_shard_tokenizer(data).empty());
  data.tokenizer = "sentencepiece";
  CHECK_THROWS_WITH(adopt_shard_tokenizer(data),
                    Catch::Contains("data.tokenizer is sentencepiece but " + found->path +
                                    " says the shards were made with the gpt2 tokenizer"));
  // Shards without a record, and text data, are left alone.
  fs::remove(found->path);
  DataConfig plain;
  plain.format = "tokens";
  plain.train = data.train;
  CHECK(adopt_shard_tokenizer(plain).empty());
  CHECK(plain.tokenizer == "byte");
}
