#include "core/infer/causal_lm_decoder.h"

#include "core/base/error.h"
#include "models/kv_cache.h"

namespace cr {
namespace {

class CausalLmDecoder final : public CachedDecoder {
 public:
  explicit CausalLmDecoder(CausalLM model) : model_(std::move(model)), cache_(model_->spec().n_layer) {
    model_->eval();
  }

  int64_t max_seq_len() const override { return model_->spec().max_seq_len; }
  void clear_cache() override { cache_.clear(); }
  int64_t cached_length() const override { return cache_.length(); }
  torch::Device device() const override { return model_->parameters().front().device(); }

  torch::Tensor extend(const torch::Tensor& tokens) override {
    // Positions past max_seq_len have no learned embedding (GPT-2, OPT) and were never trained.
    if (cache_.length() + tokens.size(1) > max_seq_len()) {
      fail("{} decoder: {} cached + {} new positions exceed max_seq_len {}", model_->spec().arch, cache_.length(),
           tokens.size(1), max_seq_len());
    }
    torch::NoGradGuard no_grad;
    return model_->forward_cached(tokens, cache_);
  }

  torch::Tensor full_logits(const torch::Tensor& tokens) override {
    torch::NoGradGuard no_grad;
    return model_->logits(tokens);
  }

 private:
  CausalLM model_;
  ContiguousKVCache cache_;
};

}  // namespace

std::unique_ptr<CachedDecoder> make_cached_decoder(CausalLM model) {
  return std::make_unique<CausalLmDecoder>(std::move(model));
}

}  // namespace cr
