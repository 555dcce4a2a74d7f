#include "memory/flat_parameters.h"

#include "core/error.h"

namespace cr {

FlatParameters::FlatParameters(torch::nn::Module& module, torch::ScalarType compute_dtype)
    : compute_dtype_(compute_dtype) {
  CR_CHECK(compute_dtype == torch::kFloat || compute_dtype == torch::kBFloat16,
           "unsupported compute dtype {}", c10::toString(compute_dtype));
  auto named = module.named_parameters(/*recurse=*/true);
  std::vector<torch::Tensor> params;
  for (bool decay : {true, false}) {
    for (const auto& item : named) {
      const auto& p = item.value();
      if ((p.dim() >= 2) != decay) continue;
      FlatEntry entry{item.key(), numel_, p.numel(), p.sizes().vec(), decay};
      numel_ += p.numel();
      if (decay) decay_numel_ = numel_;
      entries_.push_back(entry);
      params.push_back(p);
    }
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

torch::Tensor FlatParameters::view_of(const torch::Tensor& flat, const FlatEntry& entry) const {
  return flat.narrow(0, entry.offset, entry.numel).view(entry.shape);
}

void FlatParameters::zero_grad() {
  master_grad_.zero_();
  if (has_master_copy()) compute_grad_.zero_();
}

void FlatParameters::accumulate_micro_batch_grads() {
  if (!has_master_copy()) return;
  master_grad_.add_(compute_grad_.to(torch::kFloat));
  compute_grad_.zero_();
}

void FlatParameters::publish_master() {
  if (has_master_copy()) compute_.copy_(master_);
}

}  // namespace cr
