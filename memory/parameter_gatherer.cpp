#include "memory/parameter_gatherer.h"

#include <algorithm>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include "core/base/error.h"

namespace cr {

ParameterGatherer::ParameterGatherer(ZeroParameters& params, int64_t layers, bool prefetch)
    : params_(params), prefetch_(prefetch), layers_(static_cast<size_t>(layers)) {
  CR_CHECK(params.stage() == 3, "parameter gathering is for ZeRO stage 3");
  const auto& buckets = params.reduced().buckets();
  empty_ = torch::empty({0}, params.compute_shard().options());
  const auto& entries = params.entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    const int64_t layer = entries[i].layer;
    CR_CHECK(layer < layers, "parameter {} of layer {} in a {}-layer model", entries[i].name, layer, layers);
    Group& g = group(layer);
    if (g.ranges.empty() || g.ranges.back().end != entries[i].offset) g.ranges.push_back({entries[i].offset, entries[i].offset, {}, {}});
    g.ranges.back().end = entries[i].offset + entries[i].numel;
    g.entries.emplace_back(i, g.ranges.size() - 1);
    if (layer >= 0) {
      params.grad_accumulators()[i]->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, layer](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
            on_gradient(layer);
            return outputs;
          }));
    }
  }
  // Buckets never cross a layer's (or the outer parameters') runs, so each lies in one range.
  auto assign_buckets = [&](Group& g) {
    for (auto& range : g.ranges) {
      for (size_t b = 0; b < buckets.size(); ++b) {
        if (buckets[b].begin >= range.begin && buckets[b].end <= range.end) range.buckets.push_back(b);
      }
    }
  };
  assign_buckets(outer_);
  for (auto& g : layers_) assign_buckets(g);
  for (auto& g : layers_) {
    g.pending_grads = static_cast<int>(g.entries.size());
    int64_t numel = 0;
    for (const auto& range : g.ranges) numel += range.end - range.begin;
    layer_numel_ = std::max(layer_numel_, numel);
  }
}

void ParameterGatherer::start(Group& g) {
  if (g.requested) return;
  g.requested = true;
  const auto& layout = params_.reduced();
  const bool layer = &g != &outer_;
  if (layout.sharded() && layer) {
    if (free_buffers_.empty()) {
      g.buffer = torch::empty({layer_numel_}, params_.compute_shard().options());
    } else {
      g.buffer = std::move(free_buffers_.back());
      free_buffers_.pop_back();
    }
  }
  int64_t used = 0;  // of the layer buffer
  for (auto& range : g.ranges) {
    const int64_t numel = range.end - range.begin;
    if (!layout.sharded()) {  // one rank: the shard is the whole buffer
      range.gathered = params_.compute_shard().narrow(0, range.begin, numel);
      continue;
    }
    range.gathered = layer ? g.buffer.narrow(0, used, numel) : torch::empty({numel}, params_.compute_shard().options());
    used += numel;
    bytes_ += range.gathered.numel() * static_cast<int64_t>(range.gathered.element_size());
    for (size_t b : range.buckets) {
      const auto& bucket = layout.buckets()[b];
      const auto& slice = layout.slices()[b];
      g.in_flight.push_back(params_.group()->all_gather_async(
          params_.compute_shard().narrow(0, slice.shard_begin, slice.numel),
          range.gathered.narrow(0, bucket.begin - range.begin, bucket.numel())));
    }
  }
  peak_bytes_ = std::max(peak_bytes_, bytes_);
}

void ParameterGatherer::finish(Group& g) {
  if (g.ready) return;
  start(g);
  for (auto& work : g.in_flight) work->wait();
  g.in_flight.clear();
  torch::NoGradGuard no_grad;
  for (const auto& [i, r] : g.entries) {
    const auto& entry = params_.entries()[i];
    const auto& range = g.ranges[r];
    auto param = params_.parameters()[i];
    param.set_data(range.gathered.narrow(0, entry.offset - range.begin, entry.numel).view(entry.shape));
  }
  g.ready = true;
}

void ParameterGatherer::release(Group& g) {
  finish(g);  // a gather in flight must land before its buffer goes
  torch::NoGradGuard no_grad;
  for (const auto& entry : g.entries) {
    auto param = params_.parameters()[entry.first];
    param.set_data(empty_);
  }
  for (auto& range : g.ranges) {
    if (params_.reduced().sharded()) bytes_ -= range.gathered.numel() * static_cast<int64_t>(range.gathered.element_size());
    range.gathered = torch::Tensor();
  }
  if (g.buffer.defined()) free_buffers_.push_back(std::move(g.buffer));
  g.buffer = torch::Tensor();
  g.requested = g.ready = false;
}

void ParameterGatherer::gather_outer() { finish(outer_); }

void ParameterGatherer::release_all() {
  if (outer_.requested) release(outer_);
  for (auto& g : layers_) {
    if (g.requested) release(g);
    g.pending_grads = static_cast<int>(g.entries.size());
  }
}

void ParameterGatherer::before_layer(int64_t layer) {
  finish(group(layer));
  if (prefetch_ && layer + 1 < static_cast<int64_t>(layers_.size())) start(group(layer + 1));
}

torch::Tensor ParameterGatherer::after_layer(int64_t layer, const torch::Tensor& output) {
  auto result = with_layer_backward_hook(output, this, layer);
  release(group(layer));
  return result;
}

void ParameterGatherer::before_layer_backward(int64_t layer) {
  finish(group(layer));
  if (prefetch_ && layer > 0) start(group(layer - 1));
}

void ParameterGatherer::on_gradient(int64_t layer) {
  // Once every weight of the layer has its gradient, backward is done with the layer.
  Group& g = group(layer);
  if (--g.pending_grads == 0) {
    release(g);
    g.pending_grads = static_cast<int>(g.entries.size());
  }
}

}  // namespace cr
