#include "core/formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/base/json.h"
#include "core/base/mapped_file.h"
#include "core/base/strings.h"

namespace cr {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  fail("unknown DType value {}", static_cast<int>(dtype));
}

constexpr const char* kMetadataKey = "__metadata__";

// product(shape) * element size, or false when a dimension is negative or the product
// overflows.
bool byte_size(const std::vector<int64_t>& shape, size_t element_size, size_t* out) {
  size_t bytes = element_size;
  for (const int64_t dim : shape) {
    if (dim < 0) return false;
    if (dim != 0 && bytes > std::numeric_limits<size_t>::max() / static_cast<size_t>(dim)) {
      return false;
    }
    bytes *= static_cast<size_t>(dim);
  }
  *out = bytes;
  return true;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Writes the file and removes it again on any failure, so that no half-written file is left
// looking like a valid one.
class OutputFile {
 public:
  explicit OutputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot create: {}", path, std::strerror(errno));
  }
  ~OutputFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(path_.c_str());
    }
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t n) {
    const auto* p = static_cast<const char*>(data);
    constexpr size_t kMaxWrite = size_t{1} << 30;  // Linux writes at most ~2 GiB per call
    while (n > 0) {
      const ssize_t done = ::write(fd_, p, std::min(n, kMaxWrite));
      if (done < 0) {
        if (errno == EINTR) continue;
        fail("{}: write failed: {}", path_, std::strerror(errno));
      }
      p += done;
      n -= static_cast<size_t>(done);
    }
  }

  void close() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      const int err = errno;
      ::unlink(path_.c_str());
      fail("{}: close failed: {}", path_, std::strerror(err));
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size; }

const char* dtype_name(DType dtype) { return info(dtype).name; }

DType parse_dtype(const std::string& name) {
  std::vector<std::string> known;
  for (const auto& entry : kDTypes) {
    if (name == entry.name) return entry.dtype;
    known.emplace_back(entry.name);
  }
  fail("unknown dtype '{}' (supported: {})", name, fmt::join(known, ", "));
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Offsets follow the order given; the header lists entries by name.
  std::map<std::string, nlohmann::ordered_json> entries;
  size_t offset = 0;
  for (const auto& tensor : tensors) {
    if (tensor.name.empty()) fail("{}: a tensor has an empty name", path);
    if (tensor.name == kMetadataKey) fail("{}: '{}' is reserved for metadata", path, kMetadataKey);
    size_t expected = 0;
    if (!byte_size(tensor.shape, dtype_size(tensor.dtype), &expected)) {
      fail("{}: tensor '{}': invalid shape {}", path, tensor.name, shape_string(tensor.shape));
    }
    if (tensor.nbytes != expected) {
      fail("{}: tensor '{}': {} bytes given but shape {} x {} needs {}", path, tensor.name,
           tensor.nbytes, shape_string(tensor.shape), dtype_name(tensor.dtype), expected);
    }
    if (tensor.nbytes > 0 && tensor.data == nullptr) {
      fail("{}: tensor '{}': data is null", path, tensor.name);
    }
    nlohmann::ordered_json entry;
    entry["dtype"] = dtype_name(tensor.dtype);
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {offset, offset + tensor.nbytes};
    if (!entries.emplace(tensor.name, std::move(entry)).second) {
      fail("{}: tensor '{}' appears twice", path, tensor.name);
    }
    offset += tensor.nbytes;
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  for (auto& [name, entry] : entries) header[name] = std::move(entry);
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot encode the header (names and metadata must be UTF-8): {}", path, e.what());
  }
  // Pad so that the data starts 8-byte aligned, as the reference implementation does.
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');

  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(text.size() >> (8 * i));

  OutputFile out(path);
  out.write(length, sizeof length);
  out.write(text.data(), text.size());
  for (const auto& tensor : tensors) out.write(tensor.data, tensor.nbytes);
  out.close();
}

struct SafetensorsFile::Impl {
  std::string path;
  std::optional<MappedFile> file;
  std::vector<TensorView> tensors;  // in data order
  std::vector<std::string> names;
  std::map<std::string, size_t> index;
  std::map<std::string, std::string> metadata;

  void open();
  void parse_header(const char* text, size_t length, const unsigned char* data, size_t data_size);
  TensorView parse_entry(const std::string& name, const nlohmann::json& entry,
                         const unsigned char* data, size_t data_size) const;
};

void SafetensorsFile::Impl::open() {
  file.emplace(path, "safetensors file");
  const size_t file_size = file->size();
  if (file_size < 8) {
    fail("{}: file is {} bytes, too short for a safetensors header length (8 bytes)", path,
         file_size);
  }
  const unsigned char* bytes = file->data();
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[i];
  // The reference implementation's cap: a JSON header of names and offsets is never larger.
  constexpr uint64_t kMaxHeaderBytes = 100'000'000;
  if (header_length > kMaxHeaderBytes) {
    fail("{}: header length {} is over the format's limit of {} bytes (not a safetensors file?)", path, header_length,
         kMaxHeaderBytes);
  }
  if (header_length > file_size - 8) {
    fail("{}: header length {} exceeds the {} bytes after it (truncated, or not a "
         "safetensors file)",
         path, header_length, file_size - 8);
  }
  const size_t data_start = 8 + static_cast<size_t>(header_length);
  parse_header(reinterpret_cast<const char*>(bytes + 8), header_length, bytes + data_start,
               file_size - data_start);
}

void SafetensorsFile::Impl::parse_header(const char* text, size_t length,
                                         const unsigned char* data, size_t data_size) {
  const nlohmann::json header = parse_json(std::string_view(text, length), path + ": header");
  if (!header.is_object()) fail("{}: header is not a JSON object", path);

  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object()) fail("{}: {} is not an object", path, kMetadataKey);
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) fail("{}: {}.{} is not a string", path, kMetadataKey, key);
        metadata[key] = value.get<std::string>();
      }
      continue;
    }
    tensors.push_back(parse_entry(name, entry, data, data_size));
  }

  // Like the reference reader: the tensors must tile the data exactly, without gaps or overlap.
  std::sort(tensors.begin(), tensors.end(), [](const TensorView& a, const TensorView& b) {
    const auto* pa = static_cast<const unsigned char*>(a.data);
    const auto* pb = static_cast<const unsigned char*>(b.data);
    return pa != pb ? pa < pb : a.nbytes < b.nbytes;
  });
  size_t end = 0;
  for (const auto& tensor : tensors) {
    const auto begin = static_cast<size_t>(static_cast<const unsigned char*>(tensor.data) - data);
    if (begin != end) {
      fail("{}: tensor '{}': data_offsets begin at {} but the previous tensor ends at {} "
           "(gap or overlap)",
           path, tensor.name, begin, end);
    }
    end = begin + tensor.nbytes;
  }
  if (end != data_size) {
    fail("{}: tensors cover {} bytes of data but the file holds {} after the header", path, end,
         data_size);
  }

  for (size_t i = 0; i < tensors.size(); ++i) {
    names.push_back(tensors[i].name);
    index.emplace(tensors[i].name, i);
  }
}

TensorView SafetensorsFile::Impl::parse_entry(const std::string& name, const nlohmann::json& entry,
                                              const unsigned char* data,
                                              size_t data_size) const {
  if (!entry.is_object()) fail("{}: tensor '{}': entry is not an object", path, name);
  TensorView view;
  view.name = name;

  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    fail("{}: tensor '{}': dtype missing or not a string", path, name);
  }
  try {
    view.dtype = parse_dtype(dtype->get<std::string>());
  } catch (const Error& e) {
    fail("{}: tensor '{}': {}", path, name, e.what());
  }

  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) {
    fail("{}: tensor '{}': shape missing or not an array", path, name);
  }
  for (const auto& dim : *shape) {
    if (!dim.is_number_unsigned()) {
      fail("{}: tensor '{}': shape {} has an entry that is not a non-negative integer", path,
           name, shortened(shape->dump()));
    }
    view.shape.push_back(dim.get<int64_t>());
  }

  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    fail("{}: tensor '{}': data_offsets missing or not [begin, end]", path, name);
  }
  const auto begin = (*offsets)[0].get<uint64_t>();
  const auto end = (*offsets)[1].get<uint64_t>();
  if (begin > end || end > data_size) {
    fail("{}: tensor '{}': data_offsets [{}, {}] out of range: the data is {} bytes "
         "(truncated file?)",
         path, name, begin, end, data_size);
  }
  size_t expected = 0;
  if (!byte_size(view.shape, dtype_size(view.dtype), &expected) || end - begin != expected) {
    fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but shape {} x {} needs {}",
         path, name, begin, end, end - begin, shape_string(view.shape),
         dtype_name(view.dtype), expected);
  }
  view.data = data + begin;
  view.nbytes = expected;
  return view;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->open();
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const std::string& SafetensorsFile::path() const { return impl_->path; }

const std::vector<std::string>& SafetensorsFile::names() const { return impl_->names; }

bool SafetensorsFile::contains(const std::string& name) const {
  return impl_->index.count(name) > 0;
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const auto it = impl_->index.find(name);
  if (it == impl_->index.end()) {
    if (impl_->names.empty()) fail("{}: no tensor named '{}' (the file has none)", impl_->path, name);
    fail("{}: no tensor named '{}' (closest: '{}')", impl_->path, name,
         closest_match(name, impl_->names));
  }
  return impl_->tensors[it->second];
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return impl_->metadata;
}

}  // namespace cr
