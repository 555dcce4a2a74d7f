#include "core/checkpoint/tensor_slices.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"

namespace cr {
namespace {

constexpr const char* kSlicesKey = "slices";

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::string slice_file_name(int rank, int ranks) { return fmt::format("shard-{:05d}-of-{:05d}.safetensors", rank, ranks); }

FileDigest write_slice_file(const std::string& path, const std::vector<TensorSlice>& slices) {
  std::vector<TensorView> views;
  nlohmann::json index = nlohmann::json::array();
  for (const auto& slice : slices) {
    CR_CHECK(slice.offset >= 0 && slice.numel > 0 && slice.offset + slice.numel <= element_count(slice.shape),
             "slice {} [{}, +{}) of a tensor of {} elements", slice.tensor, slice.offset, slice.numel,
             element_count(slice.shape));
    const std::string key = fmt::format("{}@{}", slice.tensor, slice.offset);
    views.push_back({key, DType::F32, {slice.numel}, slice.data, static_cast<size_t>(slice.numel) * sizeof(float)});
    index.push_back({{"key", key}, {"tensor", slice.tensor}, {"shape", slice.shape}, {"offset", slice.offset}});
  }
  write_safetensors(path, views, {{kSlicesKey, index.dump()}, {"format", "colossal-run tensor slices"}});
  return seal_file(path);
}

SliceReader::SliceReader(const std::string& dir, const nlohmann::json& manifest, const std::vector<std::string>& files)
    : dir_(dir), manifest_(manifest), names_(files), verified_(files.size(), false) {
  for (size_t f = 0; f < files.size(); ++f) {
    files_.emplace_back((std::filesystem::path(dir) / files[f]).string());
    const auto& file = files_.back();
    const auto& metadata = file.metadata();
    const auto listed = metadata.find(kSlicesKey);
    if (listed == metadata.end()) {
      // Whole tensors, as checkpoints stored them before slices.
      for (const auto& name : file.names()) {
        const auto& view = file.get(name);
        if (view.dtype != DType::F32) {
          fail("checkpoint {}: {}: tensor '{}' is {}, training state is F32", dir, files[f], name,
               dtype_name(view.dtype));
        }
        tensors_[name].shape = view.shape;
        tensors_[name].pieces.push_back({f, name, 0, element_count(view.shape)});
      }
      continue;
    }
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(listed->second);
      for (const auto& entry : index) {
        const auto key = entry.at("key").get<std::string>();
        const auto tensor = entry.at("tensor").get<std::string>();
        const auto shape = entry.at("shape").get<std::vector<int64_t>>();
        const auto offset = entry.at("offset").get<int64_t>();
        const auto& view = file.get(key);
        const int64_t numel = element_count(view.shape);
        if (view.dtype != DType::F32 || offset < 0 || offset + numel > element_count(shape)) {
          fail("slice '{}' ({} x {}) does not fit its tensor of shape [{}]", key, dtype_name(view.dtype), numel,
               fmt::join(shape, ", "));
        }
        auto& stored = tensors_[tensor];
        if (!stored.pieces.empty() && stored.shape != shape) {
          fail("tensor '{}' has shape [{}] here but [{}] in another file", tensor, fmt::join(shape, ", "),
               fmt::join(stored.shape, ", "));
        }
        stored.shape = shape;
        stored.pieces.push_back({f, key, offset, numel});
      }
    } catch (const nlohmann::json::exception& e) {
      fail("checkpoint {}: {}: malformed slice index: {}", dir, files[f], e.what());
    } catch (const Error& e) {
      fail("checkpoint {}: {}: {}", dir, files[f], e.what());
    }
  }
  for (auto& [name, stored] : tensors_) {
    std::sort(stored.pieces.begin(), stored.pieces.end(),
              [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
  }
}

SliceReader::~SliceReader() = default;

bool SliceReader::contains(const std::string& tensor) const { return tensors_.count(tensor) > 0; }

const std::vector<int64_t>& SliceReader::shape(const std::string& tensor) const {
  const auto it = tensors_.find(tensor);
  if (it == tensors_.end()) fail("checkpoint {}: no tensor '{}' (was it written for another model?)", dir_, tensor);
  return it->second.shape;
}

const SafetensorsFile& SliceReader::verified(size_t file) {
  if (!verified_[file]) {
    verify_checkpoint_file(dir_, manifest_, names_[file]);
    verified_[file] = true;
  }
  return files_[file];
}

void SliceReader::read(const std::string& tensor, int64_t offset, int64_t numel, float* out) {
  const auto it = tensors_.find(tensor);
  if (it == tensors_.end()) fail("checkpoint {}: no tensor '{}' (was it written for another model?)", dir_, tensor);
  const int64_t end = offset + numel;
  if (offset < 0 || end > element_count(it->second.shape)) {
    fail("checkpoint {}: elements [{}, {}) are outside tensor '{}' of shape [{}]", dir_, offset, end, tensor,
         fmt::join(it->second.shape, ", "));
  }
  // Pieces are sorted by offset; overlapping ones (the same data written twice) are harmless.
  int64_t covered = offset;
  for (const auto& piece : it->second.pieces) {
    const int64_t piece_end = piece.offset + piece.numel;
    if (piece_end <= covered || piece.offset > covered) continue;
    const int64_t stop = std::min(piece_end, end);
    const auto& view = verified(piece.file).get(piece.key);
    std::memcpy(out + (covered - offset), static_cast<const float*>(view.data) + (covered - piece.offset),
                static_cast<size_t>(stop - covered) * sizeof(float));
    covered = stop;
    if (covered == end) return;
  }
  if (covered < end) {
    fail("checkpoint {}: no file holds elements [{}, {}) of tensor '{}' (a rank's file is missing?)", dir_, covered,
         end, tensor);
  }
}

void SliceReader::check_shape(const std::string& tensor, const std::vector<int64_t>& shape) const {
  if (this->shape(tensor) != shape) {
    fail("checkpoint {}: tensor '{}' has shape [{}] but the model needs [{}] (was it written for another model?)",
         dir_, tensor, fmt::join(this->shape(tensor), "x"), fmt::join(shape, "x"));
  }
}

void SliceReader::read_whole(const std::string& tensor, const std::vector<int64_t>& shape, float* out) {
  check_shape(tensor, shape);
  read(tensor, 0, element_count(shape), out);
}

std::vector<std::string> SliceReader::files_read() const {
  std::vector<std::string> read;
  for (size_t f = 0; f < names_.size(); ++f) {
    if (verified_[f]) read.push_back(names_[f]);
  }
  return read;
}

}  // namespace cr
