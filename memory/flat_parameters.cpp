#include "memory/flat_parameters.h"

#include <algorithm>
#include <map>

#include "core/base/error.h"

namespace cr {

std::vector<FlatEntry> flat_layout(const std::vector<ParameterShape>& registered) {
  std::vector<FlatEntry> entries;
  int64_t offset = 0;
  for (auto it = registered.rbegin(); it != registered.rend(); ++it) {
    const int64_t numel = it->numel();
    entries.push_back({it->name, offset, numel, it->shape, it->shape.size() >= 2, it->layer});
    offset += numel;
  }
  return entries;
}

std::vector<BucketRange> make_buckets(const std::vector<FlatEntry>& entries, int64_t bucket_bytes) {
  const int64_t limit = std::max<int64_t>(1, bucket_bytes / 4);
  std::vector<BucketRange> buckets;
  // Each run of one layer's parameters (or of outer ones) is cut into near-equal buckets of at
  // most `limit` elements, through parameters where needed.
  for (size_t first = 0; first < entries.size();) {
    size_t last = first;
    while (last + 1 < entries.size() && entries[last + 1].layer == entries[first].layer) ++last;
    const int64_t begin = entries[first].offset, length = entries[last].offset + entries[last].numel - begin;
    const int64_t pieces = (length + limit - 1) / limit;
    for (int64_t i = 0; i < pieces; ++i) buckets.push_back({begin + length * i / pieces, begin + length * (i + 1) / pieces});
    first = last + 1;
  }
  return buckets;
}

FlatParameters::FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype,
                               const torch::nn::ModuleList& blocks)
    : compute_dtype_(compute_dtype) {
  CR_CHECK(compute_dtype == torch::kFloat || compute_dtype == torch::kBFloat16 || compute_dtype == torch::kHalf,
           "unsupported compute dtype {}", c10::toString(compute_dtype));
  auto named = module.named_parameters(/*recurse=*/true);
  std::map<const void*, int64_t> block_of;  // by tensor identity: the model's own structure
  if (!blocks.is_empty()) {
    const auto children = blocks->children();  // the blocks, in order
    for (size_t b = 0; b < children.size(); ++b) {
      for (const auto& p : children[b]->parameters()) block_of[p.unsafeGetTensorImpl()] = static_cast<int64_t>(b);
    }
  }
  std::vector<ParameterShape> registered;
  for (const auto& item : named) {
    const auto found = block_of.find(item.value().unsafeGetTensorImpl());
    registered.push_back({item.key(), item.value().sizes().vec(), found == block_of.end() ? -1 : found->second});
  }
  entries_ = flat_layout(registered);
  auto& params = params_;
  for (auto it = named.end(); it != named.begin();) params.push_back((--it)->value());
  for (const auto& entry : entries_) numel_ += entry.numel;
  CR_CHECK(!params.empty(), "module has no parameters");
  torch::NoGradGuard no_grad;
  master_ = torch::empty({numel_}, params.front().options().dtype(torch::kFloat));
  for (size_t i = 0; i < params.size(); ++i) {
    view_of(master_, entries_[i]).copy_(params[i].to(torch::kFloat));
  }
  compute_ = has_master_copy() ? master_.to(compute_dtype) : master_;
  for (size_t i = 0; i < params.size(); ++i) params[i].set_data(view_of(compute_, entries_[i]));
}

torch::Tensor FlatParameters::view_of(const torch::Tensor& flat, const FlatEntry& entry) const {
  return flat.narrow(0, entry.offset, entry.numel).view(entry.shape);
}

void FlatParameters::publish_master() {
  if (has_master_copy()) compute_.copy_(master_);
}

}  // namespace cr
