#include "memory/flat_parameters.h"

#include "core/error.h"

namespace cr {

FlatParameters::FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype)
    : compute_dtype_(compute_dtype) {
  CR_CHECK(compute_dtype == torch::kFloat || compute_dtype == torch::kBFloat16,
           "unsupported compute dtype {}", c10::toString(compute_dtype));
  auto named = module.named_parameters(/*recurse=*/true);
  auto& params = params_;
  for (auto it = named.end(); it != named.begin();) {
    --it;
    const auto& p = it->value();
    entries_.push_back({it->key(), numel_, p.numel(), p.sizes().vec(), p.dim() >= 2});
    numel_ += p.numel();
    params.push_back(p);
  }
  CR_CHECK(!params.empty(), "module has no parameters");
  torch::NoGradGuard no_grad;
  master_ = torch::empty({numel_}, params.front().options().dtype(torch::kFloat));
  for (size_t i = 0; i < params.size(); ++i) {
    view_of(master_, entries_[i]).copy_(params[i].to(torch::kFloat));
  }
  master_grad_ = torch::zeros_like(master_);
  if (has_master_copy()) {
    compute_ = master_.to(compute_dtype);
    compute_grad_ = torch::zeros_like(compute_);
  } else {
    compute_ = master_;
    compute_grad_ = master_grad_;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].set_data(compute_.narrow(0, entries_[i].offset, entries_[i].numel).view(entries_[i].shape));
    // Autograd adds into a defined .grad in place, so gradients land in the flat buffer.
    params[i].mutable_grad() =
        compute_grad_.narrow(0, entries_[i].offset, entries_[i].numel).view(entries_[i].shape);
  }
}

std::vector<std::pair<int64_t, int64_t>> FlatParameters::decay_ranges(bool decay) const {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& entry : entries_) {
    if (entry.decay != decay) continue;
    if (!ranges.empty() && ranges.back().second == entry.offset) {
      ranges.back().second += entry.numel;
    } else {
      ranges.emplace_back(entry.offset, entry.offset + entry.numel);
    }
  }
  return ranges;
}

torch::Tensor FlatParameters::view_of(const torch::Tensor& flat, const FlatEntry& entry) const {
  return flat.narrow(0, entry.offset, entry.numel).view(entry.shape);
}

void FlatParameters::zero_grad() {
  master_grad_.zero_();
  if (has_master_copy()) compute_grad_.zero_();
}

void FlatParameters::accumulate_micro_batch_grads() {
  if (!has_master_copy()) return;
  master_grad_.add_(compute_grad_);  // widened element by element, no fp32 temporary
  compute_grad_.zero_();
}

void FlatParameters::publish_master() {
  if (has_master_copy()) compute_.copy_(master_);
}

}  // namespace cr
