// Reading and writing the Hugging Face safetensors format, so that checkpoints load in other
// tools and their tensors can be memory-mapped instead of parsed:
//   8-byte little-endian header length N | N bytes of JSON header, space-padded to a multiple
//   of 8 | tensor data, contiguous, in data_offsets order.
// Header: {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}}, offsets relative to the start of the data.
// Works on raw bytes; the trainer converts to and from framework tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cr {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", "BF16", ... as spelled in the header
DType parse_dtype(const std::string& name);  // cr::Error listing the known names

// A tensor's bytes, owned elsewhere: by the caller when writing, by the SafetensorsFile when
// reading. An element count of 0 (some dimension 0) means nbytes 0; a 0-d tensor (shape {})
// holds one element.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes `tensors` to `path`, data in the order given, each straight from its memory (no
// staging copy). Header entries are sorted by name after "__metadata__". cr::Error naming the
// file and the tensor for: nbytes != product(shape) * dtype size, a negative dimension, an
// empty, duplicate or reserved ("__metadata__") name, and for any I/O failure.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A read-only memory map of a safetensors file, validated on open. The TensorViews point into
// the map and stay valid for the lifetime of this object (moves included). Note that a
// tensor's data is only as aligned as the sizes of the tensors before it allow.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::string& path() const;
  const std::vector<std::string>& names() const;  // in data order
  bool contains(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // cr::Error naming file and tensor
  const std::map<std::string, std::string>& metadata() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cr
