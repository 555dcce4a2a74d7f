// A reader for the protobuf wire format, enough to pull known fields out of a serialized message
// without libprotobuf (whose presence alongside LibTorch's copy breaks the process).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cr::protobuf {

enum class WireType : uint8_t { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 };

// Walks the fields of one message. `source` names the data (a file path) in errors, which also
// give the byte offset from the start of the outermost message.
//
//   WireReader reader(bytes, path);
//   while (reader.next()) {
//     if (reader.field() == 1) name = reader.bytes(); else reader.skip();
//   }
//
// After next() returns true, exactly one of the value readers or skip() must consume the value.
// A value reader whose wire type differs from the field's is an error, as is truncated or
// malformed data. Errors are cr::Error.
class WireReader {
 public:
  WireReader(std::string_view data, std::string source);

  // Reads the next field's key; false at the end of the message.
  bool next();
  uint32_t field() const { return field_; }
  WireType wire_type() const { return wire_type_; }

  uint64_t varint();
  // int32 and enum fields: negative values are ten-byte varints whose low 32 bits are the value.
  int32_t int32() { return static_cast<int32_t>(varint()); }
  bool boolean() { return varint() != 0; }
  float float32();
  std::string_view bytes();
  // The value of a length-delimited field read as an embedded message.
  WireReader message();
  void skip();

  [[noreturn]] void fail_at(size_t offset, std::string_view what) const;

 private:
  WireReader(std::string_view data, size_t begin, size_t end, std::string source);

  void expect(WireType type);
  uint64_t raw_varint();
  // Moves past `count` bytes that must lie inside the message.
  size_t advance(uint64_t count);

  std::string_view data_;  // the outermost message, so that offsets count from its start
  size_t pos_;
  size_t end_;
  std::string source_;
  size_t key_offset_ = 0;
  uint32_t field_ = 0;
  WireType wire_type_ = WireType::Varint;
};

}  // namespace cr::protobuf
