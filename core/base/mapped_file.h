// A read-only memory map of a whole file: what the token-shard and safetensors readers share.
#pragma once

#include <cstddef>
#include <string>

namespace cr {

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
