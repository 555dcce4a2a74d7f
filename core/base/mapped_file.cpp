#include "core/base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/base/error.h"

namespace cr {
namespace {

// An open descriptor of a regular file and its size.
int open_regular_file(const std::string& path, const std::string& what, uint64_t& size) {
  // Non-blocking, so that a FIFO in place of a file is refused below instead of waiting for a
  // writer for ever; regular files read the same either way.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open {}: {}", path, what, std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    fail("{}: cannot stat {}: {}", path, what, std::strerror(error));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    fail("{}: {} is not a regular file", path, what);
  }
  size = static_cast<uint64_t>(info.st_size);
  return fd;
}

}  // namespace

ReadOnlyFile::ReadOnlyFile(const std::string& path, const std::string& what) : path_(path), what_(what) {
  fd_ = open_regular_file(path, what, size_);
}

ReadOnlyFile::~ReadOnlyFile() { close(); }

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept
    : path_(std::move(other.path_)),
      what_(std::move(other.what_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(std::exchange(other.size_, 0)) {}

ReadOnlyFile& ReadOnlyFile::operator=(ReadOnlyFile&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    what_ = std::move(other.what_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void ReadOnlyFile::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void ReadOnlyFile::read(uint64_t offset, void* out, size_t bytes) const {
  auto* target = static_cast<unsigned char*>(out);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd_, target + done, bytes - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("{}: cannot read {} at byte {}: {}", path_, what_, offset + done, std::strerror(errno));
    if (got == 0) {
      fail("{}: {} ends at byte {}, but held {} bytes when opened: was it truncated or rewritten during the run?",
           path_, what_, offset + done, size_);
    }
    done += static_cast<size_t>(got);
  }
}

MappedFile::MappedFile(const std::string& path, const std::string& what) {
  uint64_t size = 0;
  const int fd = open_regular_file(path, what, size);
  size_ = static_cast<size_t>(size);
  if (size_ == 0) {
    ::close(fd);
    return;
  }
  void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  const int error = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (mapping == MAP_FAILED) fail("{}: cannot mmap {}: {}", path, what, std::strerror(error));
  mapping_ = mapping;
}

MappedFile::~MappedFile() { unmap(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : mapping_(std::exchange(other.mapping_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    mapping_ = std::exchange(other.mapping_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::unmap() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
  mapping_ = nullptr;
}

}  // namespace cr
