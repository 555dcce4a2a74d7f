#include "core/text/protobuf_wire.h"

#include <cstring>

#include "core/base/error.h"

namespace cr::protobuf {

WireReader::WireReader(std::string_view data, std::string source)
    : WireReader(data, 0, data.size(), std::move(source)) {}

WireReader::WireReader(std::string_view data, size_t begin, size_t end, std::string source)
    : data_(data), pos_(begin), end_(end), source_(std::move(source)) {}

void WireReader::fail_at(size_t offset, std::string_view what) const {
  fail("{}: malformed protobuf at byte {}: {}", source_, offset, what);
}

bool WireReader::next() {
  if (pos_ >= end_) return false;
  key_offset_ = pos_;
  const uint64_t key = raw_varint();
  const uint64_t type = key & 7;
  field_ = static_cast<uint32_t>(key >> 3);
  if (field_ == 0 || (key >> 3) > UINT32_MAX) fail_at(key_offset_, "invalid field number");
  if (type == 3 || type == 4) fail_at(key_offset_, "groups are not supported");
  if (type != 0 && type != 1 && type != 2 && type != 5) {
    fail_at(key_offset_, fmt::format("invalid wire type {}", type));
  }
  wire_type_ = static_cast<WireType>(type);
  return true;
}

void WireReader::expect(WireType type) {
  if (wire_type_ != type) {
    fail_at(key_offset_, fmt::format("field {} has wire type {}, expected {}", field_,
                                     static_cast<int>(wire_type_), static_cast<int>(type)));
  }
}

uint64_t WireReader::raw_varint() {
  const size_t start = pos_;
  uint64_t value = 0;
  // Ten bytes carry 64 bits; a longer varint is malformed.
  for (int shift = 0; shift < 70; shift += 7) {
    if (pos_ >= end_) fail_at(start, "truncated varint");
    const auto byte = static_cast<unsigned char>(data_[pos_++]);
    value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return value;
  }
  fail_at(start, "varint longer than 10 bytes");
}

size_t WireReader::advance(uint64_t count) {
  if (count > end_ - pos_) {
    fail_at(key_offset_, fmt::format("field {} needs {} bytes but the message ends at byte {}",
                                     field_, count, end_));
  }
  const size_t start = pos_;
  pos_ += static_cast<size_t>(count);
  return start;
}

uint64_t WireReader::varint() {
  expect(WireType::Varint);
  return raw_varint();
}

float WireReader::float32() {
  expect(WireType::Fixed32);
  const size_t at = advance(4);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fixed32 is little-endian on the wire");
  float value;
  std::memcpy(&value, data_.data() + at, sizeof value);
  return value;
}

std::string_view WireReader::bytes() {
  expect(WireType::Bytes);
  const uint64_t length = raw_varint();
  const size_t at = advance(length);
  return data_.substr(at, static_cast<size_t>(length));
}

WireReader WireReader::message() {
  const std::string_view body = bytes();
  const auto begin = static_cast<size_t>(body.data() - data_.data());
  return WireReader(data_, begin, begin + body.size(), source_);
}

void WireReader::skip() {
  switch (wire_type_) {
    case WireType::Varint: raw_varint(); break;
    case WireType::Fixed64: advance(8); break;
    case WireType::Bytes: bytes(); break;
    case WireType::Fixed32: advance(4); break;
  }
}

}  // namespace cr::protobuf
