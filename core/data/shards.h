// Token shards in llm.c's format: a 256 x int32 header (magic, version, token count, zeros)
// followed by the tokens as little-endian uint16 or uint32. See docs/data-formats.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/mapped_file.h"

namespace cr {

constexpr int64_t kShardHeaderInts = 256;
constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;
constexpr int32_t kShardMagicU16 = 20240520;  // tokens are uint16
constexpr int32_t kShardVersionU16 = 1;
constexpr int32_t kShardMagicU32 = 20240801;  // tokens are uint32
constexpr int32_t kShardVersionU32 = 7;

// A shard read with positioned reads; the header and the file size are validated on open, so a
// truncated or foreign file fails here rather than mid-training, and one truncated during the
// run fails the read naming the file. Reads are thread-safe.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);  // throws cr::Error naming path and problem

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }            // number of tokens
  int token_bytes() const { return token_bytes_; }  // 2 or 4

  // Widens tokens [offset, offset + count) into out.
  void copy(int64_t offset, int64_t count, int64_t* out) const;

 private:
  std::string path_;
  ReadOnlyFile file_;
  int64_t size_ = 0;
  int token_bytes_ = 2;
};

// Writes a shard: the uint16 format when every id is below 65536 (half the bytes), else
// uint32. Written to "<path>.tmp" and renamed, so readers never see a partial shard.
void write_shard(const std::string& path, const uint32_t* tokens, int64_t count);
inline void write_shard(const std::string& path, const std::vector<uint32_t>& tokens) {
  write_shard(path, tokens.data(), static_cast<int64_t>(tokens.size()));
}

}  // namespace cr
