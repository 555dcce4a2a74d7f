// Read-only access to users' files: a memory map of a whole file (safetensors, read once at
// load), and positioned reads (token shards, read for the whole run: a file truncated under a
// running job then fails a read naming itself, where a mapping would raise SIGBUS).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cr {

class ReadOnlyFile {
 public:
  // `what` names the file's role in messages ("token shard"); errors name the path and errno.
  // Refuses anything but a regular file (a FIFO would block for ever).
  ReadOnlyFile(const std::string& path, const std::string& what);
  ~ReadOnlyFile();
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  uint64_t size() const { return size_; }  // when opened
  // Reads [offset, offset + bytes); thread-safe. A file that has since become shorter is an error.
  void read(uint64_t offset, void* out, size_t bytes) const;

 private:
  void close();
  std::string path_, what_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

class MappedFile {
 public:
  // `what` names the file's role in messages ("token shard"); errors name the path and errno.
  // An empty file maps to no bytes (data() null, size() 0).
  MappedFile(const std::string& path, const std::string& what);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(mapping_); }
  size_t size() const { return size_; }

 private:
  void unmap();
  void* mapping_ = nullptr;
  size_t size_ = 0;
};

}  // namespace cr
