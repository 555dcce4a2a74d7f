// Reads TensorBoard event files back record by record, independently of the writer's encoder:
// each record's length and data checked against their masked CRC-32C, each Event decoded field
// by field from the protocol buffer wire format.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/formats/tfevents.h"

namespace cr::test {

struct ReadEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::map<std::string, float> scalars;
};

class WireReader {
 public:
  explicit WireReader(const std::string& bytes) : bytes_(bytes) {}
  bool done() const { return at_ >= bytes_.size(); }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0;; shift += 7) {
      if (at_ >= bytes_.size() || shift > 63) throw std::runtime_error("truncated varint");
      const auto byte = static_cast<unsigned char>(bytes_[at_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return value;
    }
  }
  std::string take(size_t n) {
    if (at_ + n > bytes_.size()) throw std::runtime_error("truncated field");
    std::string out = bytes_.substr(at_, n);
    at_ += n;
    return out;
  }
  template <typename T>
  T fixed() {
    T value;
    const std::string raw = take(sizeof(T));
    std::memcpy(&value, raw.data(), sizeof(T));
    return value;
  }

 private:
  const std::string& bytes_;
  size_t at_ = 0;
};

inline ReadEvent decode_event(const std::string& bytes) {
  ReadEvent event;
  WireReader in(bytes);
  while (!in.done()) {
    const uint64_t key = in.varint();
    const uint64_t field = key >> 3, wire = key & 7;
    if (field == 1 && wire == 1) {
      event.wall_time = in.fixed<double>();
    } else if (field == 2 && wire == 0) {
      event.step = static_cast<int64_t>(in.varint());
    } else if (field == 3 && wire == 2) {
      event.file_version = in.take(in.varint());
    } else if (field == 5 && wire == 2) {
      const std::string summary = in.take(in.varint());
      WireReader values(summary);
      while (!values.done()) {
        if (values.varint() != ((1 << 3) | 2)) throw std::runtime_error("Summary: not a value");
        const std::string value = values.take(values.varint());
        WireReader parts(value);
        std::string tag;
        float simple = 0;
        while (!parts.done()) {
          const uint64_t part = parts.varint();
          if (part == ((1 << 3) | 2)) {
            tag = parts.take(parts.varint());
          } else if (part == ((2 << 3) | 5)) {
            simple = parts.fixed<float>();
          } else {
            throw std::runtime_error("Summary.Value: unexpected field");
          }
        }
        event.scalars[tag] = simple;
      }
    } else {
      throw std::runtime_error("Event: unexpected field " + std::to_string(field));
    }
  }
  return event;
}

// Every event of `file`; std::runtime_error at a bad CRC or a truncated record.
inline std::vector<ReadEvent> read_tfevents(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<ReadEvent> events;
  WireReader records(bytes);
  while (!records.done()) {
    const std::string length_bytes = records.take(8);
    const auto length_crc = records.fixed<uint32_t>();
    if (length_crc != masked_crc32c(length_bytes.data(), 8)) throw std::runtime_error("bad length CRC");
    uint64_t length;
    std::memcpy(&length, length_bytes.data(), 8);
    const std::string data = records.take(length);
    if (records.fixed<uint32_t>() != masked_crc32c(data.data(), data.size())) throw std::runtime_error("bad data CRC");
    events.push_back(decode_event(data));
  }
  return events;
}

}  // namespace cr::test
