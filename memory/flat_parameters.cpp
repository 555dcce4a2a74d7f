#include "memory/flat_parameters.h"

#include <algorithm>
#include <map>

#include "core/base/error.h"
#include "memory/weight_source.h"
#include "models/parameter_init.h"

namespace cr {

std::vector<FlatEntry> flat_layout(const std::vector<ParameterShape>& registered) {
  std::vector<FlatEntry> entries;
  int64_t offset = 0;
  for (auto it = registered.rbegin(); it != registered.rend(); ++it) {
    const int64_t numel = it->numel();
    entries.push_back({it->name, offset, numel, it->shape, it->shape.size() >= 2, it->layer, whole_parameter(it->shape)});
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

ModuleParameters module_parameters(torch::nn::Module& module, const torch::nn::ModuleList& blocks,
                                   const std::function<bool(const torch::Tensor&)>& keep) {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (!keep || keep(item.value())) named.emplace_back(item.key(), item.value());
  }
  CR_CHECK(!named.empty(), "module has no parameters");
  std::map<const void*, int64_t> block_of;  // by tensor identity: the model's own structure
  if (!blocks.is_empty()) {
    const auto children = blocks->children();  // the blocks, in order
    for (size_t b = 0; b < children.size(); ++b) {
      for (const auto& p : children[b]->parameters()) block_of[p.unsafeGetTensorImpl()] = static_cast<int64_t>(b);
    }
  }
  std::vector<ParameterShape> registered;
  for (const auto& [name, tensor] : named) {
    const auto found = block_of.find(tensor.unsafeGetTensorImpl());
    registered.push_back({name, tensor.sizes().vec(), found == block_of.end() ? -1 : found->second});
  }
  ModuleParameters params;
  params.entries = flat_layout(registered);
  // Split parameters (tensor parallelism) say where they sit in the whole tensor.
  const auto slices = parameter_slices(module);
  for (auto& entry : params.entries) entry.slice = slices.at(entry.name);
  for (auto it = named.rbegin(); it != named.rend(); ++it) params.tensors.push_back(it->second);
  for (const auto& entry : params.entries) params.numel += entry.numel;
  return params;
}

FlatParameters::FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype,
                               const torch::nn::ModuleList& blocks)
    : FlatParameters(module_parameters(module, blocks), ModuleWeights(module), compute_dtype,
                     module.parameters().front().device()) {}

FlatParameters::FlatParameters(ModuleParameters params, const WeightSource& source, torch::ScalarType compute_dtype,
                               torch::Device device)
    : compute_dtype_(compute_dtype), layout_(std::move(params)) {
  CR_CHECK(compute_dtype == torch::kFloat || compute_dtype == torch::kBFloat16 || compute_dtype == torch::kHalf,
           "unsupported compute dtype {}", c10::toString(compute_dtype));
  master_ = torch::empty({layout_.numel}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  compute_ = has_master_copy() ? torch::empty({layout_.numel}, master_.options().dtype(compute_dtype)) : master_;
  load(source);
  for (size_t i = 0; i < layout_.tensors.size(); ++i) layout_.tensors[i].set_data(view_of(compute_, layout_.entries[i]));
}

void FlatParameters::load(const WeightSource& source) {
  fill_flat_range(source, layout_.entries, 0, master_);
  torch::NoGradGuard no_grad;
  if (has_master_copy()) compute_.copy_(master_);
}

torch::Tensor FlatParameters::view_of(const torch::Tensor& flat, const FlatEntry& entry) const {
  return flat.narrow(0, entry.offset, entry.numel).view(entry.shape);
}

}  // namespace cr
