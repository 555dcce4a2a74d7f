#include "core/formats/tfevents.h"

#include <chrono>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <unistd.h>

#include "core/base/crc32.h"
#include "core/base/error.h"

namespace cr {
namespace {

// Protocol buffer wire types.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }

template <typename T>
void put_fixed(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian hosts only (static_assert in crc32.cpp)
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kBytes);
  put_varint(out, bytes.size());
  out += bytes;
}

// Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5.
std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_key(event, 1, kFixed64);
  put_fixed(event, wall_time);
  put_key(event, 2, kVarint);
  put_varint(event, static_cast<uint64_t>(step));
  return event;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string encode_scalar_event(double wall_time, int64_t step,
                                const std::vector<std::pair<std::string, float>>& scalars) {
  // Summary: repeated Value value = 1; Value: tag = 1, simple_value = 2 (float).
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string entry;
    put_bytes(entry, 1, tag);
    put_key(entry, 2, kFixed32);
    put_fixed(entry, value);
    put_bytes(summary, 1, entry);
  }
  std::string event = event_header(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string encode_file_version_event(double wall_time, const std::string& file_version) {
  std::string event = event_header(wall_time, 0);
  put_bytes(event, 3, file_version);
  return event;
}

std::string frame_record(const std::string& data) {
  std::string record;
  const uint64_t length = data.size();
  put_fixed(record, length);
  put_fixed(record, masked_crc32c(record.data(), sizeof(length)));
  record += data;
  put_fixed(record, masked_crc32c(data.data(), data.size()));
  return record;
}

TfEventsWriter::TfEventsWriter(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) fail("{}: cannot create the TensorBoard directory: {}", dir, error.message());
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const double now = now_s();
  path_ = (std::filesystem::path(dir) /
           fmt::format("events.out.tfevents.{}.{}.{}", static_cast<int64_t>(now), host, getpid()))
              .string();
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) fail("{}: cannot open the TensorBoard event file: {}", path_, std::strerror(errno));
  write_record(encode_file_version_event(now, "brain.Event:2"));
}

TfEventsWriter::~TfEventsWriter() {
  if (file_) std::fclose(file_);
}

void TfEventsWriter::write_scalars(int64_t step, const std::vector<std::pair<std::string, float>>& scalars) {
  write_record(encode_scalar_event(now_s(), step, scalars));
}

void TfEventsWriter::write_record(const std::string& data) {
  const std::string record = frame_record(data);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() || std::fflush(file_) != 0) {
    fail("{}: cannot write the TensorBoard event file: {}", path_, std::strerror(errno));
  }
}

}  // namespace cr
