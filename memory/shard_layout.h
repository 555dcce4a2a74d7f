// How the flat parameter buffer is cut into communication buckets and how each bucket is split
// over the data-parallel ranks. Every ZeRO stage uses the same cut: a bucket's gradients are
// reduce-scattered so that rank r receives the r-th near-equal slice of it (shard_range), and
// rank r's shard is the concatenation of its slices over all buckets ("shard space"). Because
// stages 0-3 reduce the same buckets the same way, they compute bitwise the same gradients.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace cr {

class Communicator;

struct BucketRange {
  int64_t begin = 0, end = 0;  // [begin, end) of the flat buffer
  int64_t numel() const { return end - begin; }
};

// One rank's part of one bucket: flat [flat_begin, flat_begin + numel) is stored at
// [shard_begin, shard_begin + numel) of that rank's shard.
struct ShardSlice {
  int64_t flat_begin = 0, shard_begin = 0, numel = 0;
};

class ShardLayout {
 public:
  // Buckets must tile [0, total) in order. rank/size: the data-parallel position; size 1 means
  // every rank keeps the whole buffer (shard space equals flat space).
  ShardLayout(std::vector<BucketRange> buckets, int rank, int size);

  const std::vector<BucketRange>& buckets() const { return buckets_; }
  const std::vector<ShardSlice>& slices() const { return slices_; }  // this rank's, per bucket
  int rank() const { return rank_; }
  int size() const { return size_; }
  int64_t total_numel() const { return total_; }
  int64_t shard_numel() const { return shard_numel_; }
  bool sharded() const { return size_ > 1; }

  // This rank's slices of a flat-space tensor, as one new shard-space tensor.
  torch::Tensor shard_of(const torch::Tensor& full) const;
  // Every rank's shard-space tensor assembled into a flat-space one (all ranks get it).
  void gather(Communicator* group, const torch::Tensor& shard, torch::Tensor& full) const;

 private:
  std::vector<BucketRange> buckets_;
  std::vector<ShardSlice> slices_;
  int rank_ = 0, size_ = 1;
  int64_t total_ = 0, shard_numel_ = 0;
};

}  // namespace cr
