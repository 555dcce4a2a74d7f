#include "core/checkpoint/tensor_slices.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"
#include "core/base/json.h"
#include "core/base/shape.h"

namespace cr {
namespace {

constexpr const char* kSlicesKey = "slices";

}  // namespace

std::string slice_file_name(int rank, int ranks) { return fmt::format("shard-{:05d}-of-{:05d}.safetensors", rank, ranks); }

void append_run(std::vector<TensorSlice>& slices, const std::string& tensor, const std::vector<int64_t>& shape,
                int64_t offset, int64_t numel, const float* data) {
  if (!slices.empty()) {
    auto& last = slices.back();
    if (last.tensor == tensor && last.runs == 1 && offset == last.offset + last.numel && data == last.data + last.numel) {
      last.numel += numel;  // one longer range
      return;
    }
    const bool continues = last.tensor == tensor && last.numel == numel && data == last.data + last.runs * numel;
    if (continues && last.runs == 1 && offset >= last.offset + numel) {
      last.stride = offset - last.offset;
      last.runs = 2;
      return;
    }
    if (continues && last.runs > 1 && offset == last.offset + last.runs * last.stride) {
      ++last.runs;
      return;
    }
  }
  slices.push_back({tensor, shape, offset, numel, 1, 0, data});
}

FileDigest write_slice_file(const std::string& path, const std::vector<TensorSlice>& slices) {
  std::vector<TensorView> views;
  nlohmann::json index = nlohmann::json::array();
  for (const auto& slice : slices) {
    const int64_t last_end = slice.offset + (slice.runs - 1) * slice.stride + slice.numel;
    CR_CHECK(slice.offset >= 0 && slice.numel > 0 && slice.runs >= 1 && (slice.runs == 1 || slice.stride >= slice.numel) &&
                 last_end <= element_count(slice.shape),
             "slice {} [{}, +{}) x {} runs at stride {} of a tensor of {} elements", slice.tensor, slice.offset,
             slice.numel, slice.runs, slice.stride, element_count(slice.shape));
    const std::string key = fmt::format("{}@{}", slice.tensor, slice.offset);
    const int64_t stored = slice.numel * slice.runs;
    views.push_back({key, DType::F32, {stored}, slice.data, static_cast<size_t>(stored) * sizeof(float)});
    nlohmann::json entry{{"key", key}, {"tensor", slice.tensor}, {"shape", slice.shape}, {"offset", slice.offset}};
    if (slice.runs > 1) {
      entry["runs"] = slice.runs;
      entry["stride"] = slice.stride;
    }
    index.push_back(entry);
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
        tensors_[name].pieces.push_back({f, name, 0, element_count(view.shape), 0});
      }
      continue;
    }
    nlohmann::json index;
    try {
      index = parse_json(listed->second, "slice index");
      for (const auto& entry : index) {
        const auto key = entry.at("key").get<std::string>();
        const auto tensor = entry.at("tensor").get<std::string>();
        const auto shape = entry.at("shape").get<std::vector<int64_t>>();
        const auto offset = entry.at("offset").get<int64_t>();
        const int64_t runs = entry.contains("runs") ? entry.at("runs").get<int64_t>() : 1;
        const int64_t stride = entry.contains("stride") ? entry.at("stride").get<int64_t>() : 0;
        const auto& view = file.get(key);
        const int64_t stored_numel = element_count(view.shape);
        const int64_t numel = runs >= 1 ? stored_numel / runs : 0;
        if (view.dtype != DType::F32 || offset < 0 || runs < 1 || numel * runs != stored_numel ||
            (runs > 1 && stride < numel) || offset + (runs - 1) * stride + numel > element_count(shape)) {
          fail("slice '{}' ({} x {}, {} runs at stride {}) does not fit its tensor of shape [{}]", key,
               dtype_name(view.dtype), stored_numel, runs, stride, fmt::join(shape, ", "));
        }
        auto& stored = tensors_[tensor];
        if (!stored.pieces.empty() && stored.shape != shape) {
          fail("tensor '{}' has shape [{}] here but [{}] in another file", tensor, fmt::join(shape, ", "),
               fmt::join(stored.shape, ", "));
        }
        stored.shape = shape;
        for (int64_t run = 0; run < runs; ++run) stored.pieces.push_back({f, key, offset + run * stride, numel, run * numel});
      }
    } catch (const nlohmann::json::exception& e) {
      fail("checkpoint {}: {}: malformed slice index: {}", dir, files[f], e.what());
    } catch (const Error& e) {
      fail("checkpoint {}: {}: {}", dir, files[f], e.what());
    }
  }
  for (auto& [name, stored] : tensors_) {
    // Sorted by offset with pieces inside an earlier one dropped (the same data written twice), so
    // that offsets and ends both increase and a read can start by binary search.
    auto& pieces = stored.pieces;
    std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
      return a.offset != b.offset ? a.offset < b.offset : a.numel > b.numel;
    });
    std::vector<Piece> kept;
    for (auto& piece : pieces) {
      if (kept.empty() || piece.offset + piece.numel > kept.back().offset + kept.back().numel) {
        kept.push_back(std::move(piece));
      }
    }
    pieces = std::move(kept);
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
  // Column splits store many short pieces: start at the last one beginning at or before offset
  // (offsets and ends both increase, so no earlier piece reaches further).
  const auto& pieces = it->second.pieces;
  auto first = std::upper_bound(pieces.begin(), pieces.end(), offset,
                                [](int64_t position, const Piece& piece) { return position < piece.offset; });
  if (first != pieces.begin()) --first;
  int64_t covered = offset;
  for (auto piece = first; piece != pieces.end() && piece->offset <= covered; ++piece) {
    const int64_t piece_end = piece->offset + piece->numel;
    if (piece_end <= covered) continue;
    const int64_t stop = std::min(piece_end, end);
    const auto& view = verified(piece->file).get(piece->key);
    std::memcpy(out + (covered - offset),
                static_cast<const float*>(view.data) + piece->data_offset + (covered - piece->offset),
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
