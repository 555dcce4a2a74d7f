#include "memory/shard_layout.h"

#include "core/base/error.h"
#include "parallel/communicator.h"

namespace cr {

ShardLayout::ShardLayout(std::vector<BucketRange> buckets, int rank, int size)
    : buckets_(std::move(buckets)), rank_(rank), size_(size) {
  CR_CHECK(size >= 1 && rank >= 0 && rank < size, "shard layout: rank {} of {}", rank, size);
  for (const auto& bucket : buckets_) {
    CR_CHECK(bucket.begin == total_ && bucket.end > bucket.begin, "shard layout: buckets must tile the buffer");
    const auto [begin, end] = shard_range(bucket.numel(), rank, size);
    slices_.push_back({bucket.begin + begin, shard_numel_, end - begin});
    shard_numel_ += end - begin;
    total_ = bucket.end;
  }
}

torch::Tensor ShardLayout::shard_of(const torch::Tensor& full) const {
  CR_CHECK(full.numel() == total_, "shard_of: {} elements, layout has {}", full.numel(), total_);
  if (!sharded()) return full.clone();
  auto shard = torch::empty({shard_numel_}, full.options());
  for (const auto& slice : slices_) {
    shard.narrow(0, slice.shard_begin, slice.numel).copy_(full.narrow(0, slice.flat_begin, slice.numel));
  }
  return shard;
}

void ShardLayout::gather(Communicator* group, const torch::Tensor& shard, torch::Tensor& full) const {
  CR_CHECK(shard.numel() == shard_numel_ && full.numel() == total_, "gather: sizes do not match the layout");
  if (!sharded()) {
    if (!shard.is_same(full)) full.copy_(shard);
    return;
  }
  CR_CHECK(group && group->size() == size_, "gather: needs the {}-rank data-parallel group", size_);
  std::vector<std::unique_ptr<CommWork>> works;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& slice = slices_[b];
    works.push_back(group->all_gather_async(shard.narrow(0, slice.shard_begin, slice.numel),
                                            full.narrow(0, buckets_[b].begin, buckets_[b].numel())));
  }
  for (auto& work : works) work->wait();
}

}  // namespace cr
