// The tokenizer a set of token shards was made with, which `prepare` records next to them as
// <prefix>_tokenizer.json (docs/data-formats.md), so that training, `eval`, `generate` and the
// run directory use the right one without being told: shards' ids mean nothing without it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config/config.h"

namespace cr {

struct ShardTokenizer {
  std::string kind;                // byte | gpt2 | sentencepiece (data.tokenizer)
  std::optional<std::string> dir;  // data.tokenizer_dir, absolute
  int64_t vocab_size = 0;
  std::string path;                // the record read
};

void write_shard_tokenizer(const std::string& output_prefix, const ShardTokenizer& tokenizer);

// The record of the shards the first data.train entry names (<prefix>_train_NNNNNN.bin or
// _val_), if `prepare` left one; cr::Error naming the file when it is unreadable.
std::optional<ShardTokenizer> find_shard_tokenizer(const std::vector<std::string>& train);

// data.format tokens: a config that names no tokenizer (byte, no directory) takes the shards'
// and gets a note saying so; one that names another kind than the shards' is refused.
// "" when nothing changed.
std::string adopt_shard_tokenizer(DataConfig& data);

}  // namespace cr
