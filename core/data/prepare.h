// Text files to token shards: every input file is a document, documents are joined by the
// tokenizer's end-of-text id, and the stream is cut into shards of at most shard_tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/text/tokenizer.h"

namespace cr {

struct PrepareOptions {
  std::vector<std::string> inputs;       // text files, in order
  std::string output_prefix;             // "out/tiny" -> out/tiny_train_000000.bin, ...
  const Tokenizer* tokenizer = nullptr;  // not owned
  int64_t shard_tokens = 100000000;      // at most this many tokens per shard
  double val_fraction = 0.0;             // the last ceil(val_fraction * tokens) go to val shards
};

struct PreparedShard {
  std::string path;
  int64_t tokens = 0;
};

struct PrepareReport {
  std::vector<PreparedShard> train;
  std::vector<PreparedShard> val;
  std::vector<std::string> removed;  // stale shards of an earlier run with the same prefix
  int64_t documents = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
};

// Writes <prefix>_train_NNNNNN.bin and, when val_fraction > 0, <prefix>_val_NNNNNN.bin
// (NNNNNN counts from 000000), creating the prefix's directory if needed. Higher-numbered
// shards left by an earlier run with the same prefix are removed, so that a glob over the
// prefix sees only this run's output. Holds about val_fraction of the tokens plus one shard
// in memory. Throws cr::Error naming the file or option at fault.
PrepareReport prepare_shards(const PrepareOptions& options);

// One text file's tokens; the error names the file when it cannot be read.
std::vector<uint32_t> encode_document(const std::string& path, const Tokenizer& tokenizer);

// "<prefix>_<split>_<index as 6 digits>.bin"
std::string shard_path(const std::string& prefix, const std::string& split, int64_t index);

}  // namespace cr
