#include "core/data/shards.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/base/error.h"

// Shards are read and written by reinterpreting bytes, which matches llm.c only on
// little-endian hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards are little-endian");

namespace cr {
namespace {

struct ShardHeader {
  int32_t magic;
  int32_t version;
  int32_t num_tokens;
};

ShardHeader read_header(const unsigned char* bytes) {
  ShardHeader header;
  std::memcpy(&header.magic, bytes, 4);
  std::memcpy(&header.version, bytes + 4, 4);
  std::memcpy(&header.num_tokens, bytes + 8, 4);
  return header;
}

// Token width for a header, or a message saying why the header is not a shard's.
int token_bytes_for(const ShardHeader& header, const std::string& path) {
  if (header.magic == kShardMagicU16) {
    if (header.version != kShardVersionU16) {
      fail("{}: version {} does not match magic {} (expected version {})", path, header.version,
           header.magic, kShardVersionU16);
    }
    return 2;
  }
  if (header.magic == kShardMagicU32) {
    if (header.version != kShardVersionU32) {
      fail("{}: version {} does not match magic {} (expected version {})", path, header.version,
           header.magic, kShardVersionU32);
    }
    return 4;
  }
  fail("{}: bad magic {} (expected {} or {}); not a token shard", path, header.magic,
       kShardMagicU16, kShardMagicU32);
}

}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path), file_(path, "token shard") {
  const auto file_bytes = static_cast<int64_t>(file_.size());
  if (file_bytes < kShardHeaderBytes) {
    fail("{}: file shorter than the {}-byte header ({} bytes)", path, kShardHeaderBytes, file_bytes);
  }
  unsigned char bytes[12];
  file_.read(0, bytes, sizeof bytes);
  const ShardHeader header = read_header(bytes);
  token_bytes_ = token_bytes_for(header, path);
  const int64_t payload_bytes = file_bytes - kShardHeaderBytes;
  if (header.num_tokens < 0 || payload_bytes != int64_t{header.num_tokens} * token_bytes_) {
    fail(
        "{}: header says {} tokens but the file holds {} ({} bytes of {}-byte tokens after "
        "the header)",
        path, header.num_tokens, payload_bytes / token_bytes_, payload_bytes, token_bytes_);
  }
  size_ = header.num_tokens;
}

void TokenShard::copy(int64_t offset, int64_t count, int64_t* out) const {
  CR_CHECK(offset >= 0 && count >= 0 && offset + count <= size_,
           "{}: tokens [{}, {}) out of range for {} tokens", path_, offset, offset + count, size_);
  // Read into the end of `out`, then widened front to back: no buffer, and the narrow token
  // i sits at or after the wide slot i, so no token is overwritten before it is read.
  const size_t bytes = static_cast<size_t>(count * token_bytes_);
  auto* narrow = reinterpret_cast<unsigned char*>(out + count) - bytes;
  file_.read(static_cast<uint64_t>(kShardHeaderBytes + offset * token_bytes_), narrow, bytes);
  for (int64_t i = 0; i < count; ++i) {
    if (token_bytes_ == 2) {
      uint16_t id;
      std::memcpy(&id, narrow + i * 2, 2);
      out[i] = id;
    } else {
      uint32_t id;
      std::memcpy(&id, narrow + i * 4, 4);
      out[i] = id;
    }
  }
}

namespace {

template <typename Token>
void write_tokens(std::FILE* file, const uint32_t* tokens, int64_t count, const std::string& path) {
  constexpr int64_t kChunk = 1 << 16;
  std::vector<Token> buffer(static_cast<size_t>(std::min(count, kChunk)));
  for (int64_t start = 0; start < count; start += kChunk) {
    const int64_t n = std::min(kChunk, count - start);
    for (int64_t i = 0; i < n; ++i) buffer[i] = static_cast<Token>(tokens[start + i]);
    if (std::fwrite(buffer.data(), sizeof(Token), n, file) != static_cast<size_t>(n)) {
      fail("{}: write failed: {}", path, std::strerror(errno));
    }
  }
}

}  // namespace

void write_shard(const std::string& path, const uint32_t* tokens, int64_t count) {
  if (count < 0 || count > std::numeric_limits<int32_t>::max()) {
    fail("{}: {} tokens do not fit a shard (at most {})", path, count,
         std::numeric_limits<int32_t>::max());
  }
  bool wide = false;
  for (int64_t i = 0; i < count && !wide; ++i) wide = tokens[i] > 0xFFFF;

  int32_t header[kShardHeaderInts] = {};
  header[0] = wide ? kShardMagicU32 : kShardMagicU16;
  header[1] = wide ? kShardVersionU32 : kShardVersionU16;
  header[2] = static_cast<int32_t>(count);

  const std::string temp_path = path + ".tmp";
  std::FILE* file = std::fopen(temp_path.c_str(), "wb");
  if (file == nullptr) fail("{}: cannot create: {}", temp_path, std::strerror(errno));
  try {
    if (std::fwrite(header, sizeof(header), 1, file) != 1) {
      fail("{}: write failed: {}", temp_path, std::strerror(errno));
    }
    if (wide) {
      write_tokens<uint32_t>(file, tokens, count, temp_path);
    } else {
      write_tokens<uint16_t>(file, tokens, count, temp_path);
    }
  } catch (...) {
    std::fclose(file);
    std::remove(temp_path.c_str());
    throw;
  }
  if (std::fclose(file) != 0) {
    const int error = errno;
    std::remove(temp_path.c_str());
    fail("{}: write failed: {}", temp_path, std::strerror(error));
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(temp_path.c_str());
    fail("{}: cannot rename {} into place: {}", path, temp_path, std::strerror(error));
  }
}

}  // namespace cr
