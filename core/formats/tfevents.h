// TensorBoard's event files, written without TensorFlow: a sequence of records (little-endian
// u64 length, its masked CRC-32C, the bytes, their masked CRC-32C), each an `Event` protocol
// buffer: first one with file_version "brain.Event:2", then scalar summaries (wall_time, step,
// Summary{value: [{tag, simple_value}]}). The encoding is hand-written: only those fields.
// docs/run-directory.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace cr {

// TensorBoard's CRC mask: rotated right by 15 bits plus a constant.
uint32_t masked_crc32c(const void* data, size_t n);

// One Event message's bytes: scalars (tag, value) at `step`; the file-version event.
std::string encode_scalar_event(double wall_time, int64_t step,
                                const std::vector<std::pair<std::string, float>>& scalars);
std::string encode_file_version_event(double wall_time, const std::string& file_version);
// A record around `data`.
std::string frame_record(const std::string& data);

class TfEventsWriter {
 public:
  // Creates `dir` and a new events.out.tfevents.<seconds>.<host>.<pid> file in it, starting with
  // the file-version event. cr::Error naming the path when it cannot.
  explicit TfEventsWriter(const std::string& dir);
  ~TfEventsWriter();
  TfEventsWriter(const TfEventsWriter&) = delete;
  TfEventsWriter& operator=(const TfEventsWriter&) = delete;

  // One event with every scalar, written through (a killed run keeps what it logged).
  void write_scalars(int64_t step, const std::vector<std::pair<std::string, float>>& scalars);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace cr
