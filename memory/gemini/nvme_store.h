// Gemini's NVMe tier: one file per rank under zero.nvme_path, unlinked as soon as it is open, so
// that it is gone however the process ends (an error, a signal, a killed rank) and its space
// returns when the descriptor closes. Regions of it are read and written with io_uring (liburing),
// bypassing the page cache (O_DIRECT: buffers, offsets and sizes in 4 KiB units), in pieces kept
// in flight together; each region's CRC-32 is recorded when written and checked when read back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cr {

constexpr int64_t kNvmeBlock = 4096;

class NvmeStore {
 public:
  NvmeStore(const std::string& directory, int rank);
  ~NvmeStore();
  NvmeStore(const NvmeStore&) = delete;
  NvmeStore& operator=(const NvmeStore&) = delete;

  // A region of `bytes` (rounded up to kNvmeBlock); `what` names it in errors.
  size_t add_region(int64_t bytes, std::string what);
  int64_t region_bytes(size_t region) const;  // rounded

  // Start moving region_bytes(region) bytes between `data` (kNvmeBlock-aligned) and the region;
  // the buffer must stay as it is until wait() returns for the ticket.
  using Ticket = int64_t;
  Ticket write(size_t region, const void* data);
  Ticket read(size_t region, void* data);
  void wait(Ticket ticket);  // that transfer done; a read's checksum checked (cr::Error on mismatch)
  void wait_all();

  const std::string& path() const { return path_; }
  int64_t bytes_read() const { return bytes_read_; }
  int64_t bytes_written() const { return bytes_written_; }
  int64_t file_bytes() const { return end_; }

 private:
  struct Region {
    int64_t offset = 0, bytes = 0;
    std::string what;
    uint32_t crc = 0;
    bool written = false;
  };
  struct Transfer {
    size_t region;
    char* data;
    bool read;
    int64_t pieces_left = 0;
    bool done = false;
  };
  struct Ring;
  Ticket start(size_t region, char* data, bool read);
  void reap_one();
  void finish(Transfer& transfer);

  std::string path_;
  int fd_ = -1;
  std::unique_ptr<Ring> ring_;
  std::vector<Region> regions_;
  std::vector<Transfer> transfers_;  // by ticket
  int64_t end_ = 0, in_flight_ = 0, bytes_read_ = 0, bytes_written_ = 0;
};

}  // namespace cr
