#include "memory/gemini/nvme_store.h"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/base/crc32.h"
#include "core/base/error.h"
#include "core/base/strings.h"

namespace cr {
namespace {

constexpr unsigned kQueueDepth = 32;
constexpr int64_t kPieceBytes = 8 << 20;  // one request's size: several in flight keep the device busy

}  // namespace

struct NvmeStore::Ring {
  io_uring ring;
};

NvmeStore::NvmeStore(const std::string& directory, int rank) : ring_(std::make_unique<Ring>()) {
  std::error_code error;
  if (!std::filesystem::is_directory(directory, error)) {
    fail("zero.nvme_path {}: not a directory (create it on the NVMe drive first)", directory);
  }
  path_ = (std::filesystem::path(directory) / fmt::format("colossal-run-gemini-{}-rank{}.bin", getpid(), rank)).string();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
  if (fd_ < 0) {
    fail("zero.nvme_path: cannot create {} for direct I/O: {} (a file system without O_DIRECT, such as tmpfs, cannot "
         "hold the NVMe tier)", path_, std::strerror(errno));
  }
  ::unlink(path_.c_str());  // the data lives while the descriptor does, and no longer
  const int result = io_uring_queue_init(kQueueDepth, &ring_->ring, 0);
  if (result < 0) {
    ::close(fd_);
    fail("zero.nvme_path: io_uring is not available here ({}); the NVMe tier needs it", std::strerror(-result));
  }
}

NvmeStore::~NvmeStore() {
  while (in_flight_ > 0) reap_one();
  io_uring_queue_exit(&ring_->ring);
  ::close(fd_);
}

size_t NvmeStore::add_region(int64_t bytes, std::string what) {
  const int64_t rounded = (bytes + kNvmeBlock - 1) / kNvmeBlock * kNvmeBlock;
  regions_.push_back({end_, rounded, std::move(what)});
  end_ += rounded;
  return regions_.size() - 1;
}

int64_t NvmeStore::region_bytes(size_t region) const { return regions_[region].bytes; }

NvmeStore::Ticket NvmeStore::write(size_t region, const void* data) {
  Region& r = regions_[region];
  r.crc = crc32(data, static_cast<size_t>(r.bytes));
  r.written = true;
  bytes_written_ += r.bytes;
  return start(region, const_cast<char*>(static_cast<const char*>(data)), false);
}

NvmeStore::Ticket NvmeStore::read(size_t region, void* data) {
  const Region& r = regions_[region];
  CR_CHECK(r.written, "NVMe region {} ({}) read before it was written", region, r.what);
  bytes_read_ += r.bytes;
  return start(region, static_cast<char*>(data), true);
}

NvmeStore::Ticket NvmeStore::start(size_t region, char* data, bool read) {
  CR_CHECK(reinterpret_cast<uintptr_t>(data) % kNvmeBlock == 0, "NVMe transfer of {}: buffer not 4 KiB aligned",
           regions_[region].what);
  const Region& r = regions_[region];
  const Ticket ticket = static_cast<Ticket>(transfers_.size());
  transfers_.push_back({region, data, read});
  for (int64_t at = 0; at < r.bytes; at += kPieceBytes) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
    while (sqe == nullptr) {  // the queue is full: make room
      io_uring_submit(&ring_->ring);
      reap_one();
      sqe = io_uring_get_sqe(&ring_->ring);
    }
    const unsigned length = static_cast<unsigned>(std::min(kPieceBytes, r.bytes - at));
    if (read) {
      io_uring_prep_read(sqe, fd_, data + at, length, static_cast<uint64_t>(r.offset + at));
    } else {
      io_uring_prep_write(sqe, fd_, data + at, length, static_cast<uint64_t>(r.offset + at));
    }
    // The user data packs the ticket and the piece's offset, so that a short transfer can finish.
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(ticket) << 32 | static_cast<uint64_t>(at / kPieceBytes));
    ++transfers_.back().pieces_left;
    ++in_flight_;
  }
  io_uring_submit(&ring_->ring);
  return ticket;
}

void NvmeStore::reap_one() {
  io_uring_cqe* cqe = nullptr;
  const int result = io_uring_wait_cqe(&ring_->ring, &cqe);
  if (result < 0) fail("NVMe tier {}: waiting for io_uring failed: {}", path_, std::strerror(-result));
  const uint64_t tag = io_uring_cqe_get_data64(cqe);
  const int res = cqe->res;
  io_uring_cqe_seen(&ring_->ring, cqe);
  --in_flight_;
  Transfer& transfer = transfers_[static_cast<size_t>(tag >> 32)];
  const Region& r = regions_[transfer.region];
  const int64_t at = static_cast<int64_t>(tag & 0xffffffffu) * kPieceBytes;
  const int64_t length = std::min(kPieceBytes, r.bytes - at);
  if (res < 0) {
    fail("NVMe tier {}: {} {} at byte {}: {}", path_, transfer.read ? "reading" : "writing", r.what, r.offset + at,
         std::strerror(-res));
  }
  // A short transfer finishes synchronously (rare: O_DIRECT moves whole blocks).
  for (int64_t done = res; done < length;) {
    const ssize_t more = transfer.read ? ::pread(fd_, transfer.data + at + done, length - done, r.offset + at + done)
                                       : ::pwrite(fd_, transfer.data + at + done, length - done, r.offset + at + done);
    if (more <= 0) fail("NVMe tier {}: {} {} stopped short at byte {}", path_, transfer.read ? "reading" : "writing", r.what, r.offset + at + done);
    done += more;
  }
  if (--transfer.pieces_left == 0) finish(transfer);
}

void NvmeStore::finish(Transfer& transfer) {
  transfer.done = true;
  if (!transfer.read) return;
  const Region& r = regions_[transfer.region];
  const uint32_t crc = crc32(transfer.data, static_cast<size_t>(r.bytes));
  if (crc != r.crc) {
    fail("NVMe tier {}: {} came back with CRC-32 {:08x}, written with {:08x} ({} at byte {}): the drive returned "
         "other data than it was given",
         path_, r.what, crc, r.crc, human_bytes(static_cast<double>(r.bytes)), r.offset);
  }
}

void NvmeStore::wait(Ticket ticket) {
  while (!transfers_[static_cast<size_t>(ticket)].done) reap_one();
}

void NvmeStore::wait_all() {
  while (in_flight_ > 0) reap_one();
  transfers_.clear();
}

}  // namespace cr
