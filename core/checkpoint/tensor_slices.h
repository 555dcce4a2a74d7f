// Distributed checkpoints as named tensor slices (docs/checkpoint-format.md). Each rank writes
// the parts of the global tensors it owns into its own safetensors file, each part recorded with
// the tensor's global shape and the part's position; a reader assembles any part of any tensor
// from whichever files hold it, so a checkpoint written by one layout loads in any other.
//
// A slice is elements [offset, offset + numel) of the tensor's row-major flattening: ZeRO's
// shards cut tensors at arbitrary element boundaries, and a row split (tensor parallelism) is
// one such range per rank. A column split is `runs` such ranges `stride` elements apart.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_store.h"
#include "core/formats/safetensors.h"

namespace cr {

struct TensorSlice {
  std::string tensor;          // global name, e.g. "h.0.attn.c_attn.weight" or "exp_avg.<name>"
  std::vector<int64_t> shape;  // the whole tensor's shape
  int64_t offset = 0;          // first element of the slice in the flattened tensor
  int64_t numel = 0;           // elements per run
  int64_t runs = 1;            // run i starts at offset + i * stride
  int64_t stride = 0;
  const float* data = nullptr;  // fp32, the runs back to back, owned by the caller while writing

  int64_t elements() const { return numel * runs; }
};

// Appends the run [offset, offset + numel) of `tensor` (data: its values) to `slices`, extending
// the last slice when the run continues its pattern of equal runs at a fixed stride.
void append_run(std::vector<TensorSlice>& slices, const std::string& tensor, const std::vector<int64_t>& shape,
                int64_t offset, int64_t numel, const float* data);

// "shard-00003-of-00008.safetensors"
std::string slice_file_name(int rank, int ranks);

// Writes `slices` as one safetensors file (tensor keys "<tensor>@<offset>", the slice index in
// the "slices" metadata entry) and seals it (fsync; size and CRC-32 for the manifest).
FileDigest write_slice_file(const std::string& path, const std::vector<TensorSlice>& slices);

// Reads parts of the tensors stored in a checkpoint directory's slice files. Files written
// before slices existed (whole tensors, no "slices" metadata) read as one whole slice per
// tensor. Each file's CRC-32 is checked against the manifest the first time it is read.
class SliceReader {
 public:
  // `manifest`: the directory's manifest.json (from verify_checkpoint, sizes checked);
  // `files`: the tensor files to index (e.g. every shard-*.safetensors).
  SliceReader(const std::string& dir, const nlohmann::json& manifest, const std::vector<std::string>& files);
  ~SliceReader();

  bool contains(const std::string& tensor) const;
  const std::vector<int64_t>& shape(const std::string& tensor) const;  // cr::Error if absent
  // Copies elements [offset, offset + numel) of `tensor` into `out`. cr::Error naming the
  // checkpoint and tensor when the files do not cover that range, or a file is corrupted.
  void read(const std::string& tensor, int64_t offset, int64_t numel, float* out);
  // cr::Error naming the tensor and both shapes unless `tensor` is stored with `shape`.
  void check_shape(const std::string& tensor, const std::vector<int64_t>& shape) const;
  // The whole tensor, which must have `shape`.
  void read_whole(const std::string& tensor, const std::vector<int64_t>& shape, float* out);
  // The names of the files read so far (each verified once).
  std::vector<std::string> files_read() const;

 private:
  struct Piece {
    size_t file;
    std::string key;
    int64_t offset, numel;
    int64_t data_offset;  // of the piece's first element within the stored key
  };
  struct Stored {
    std::vector<int64_t> shape;
    std::vector<Piece> pieces;  // sorted by offset
  };
  const SafetensorsFile& verified(size_t file);

  std::string dir_;
  nlohmann::json manifest_;
  std::vector<std::string> names_;
  std::vector<SafetensorsFile> files_;
  std::vector<bool> verified_;
  std::map<std::string, Stored> tensors_;
};

}  // namespace cr
