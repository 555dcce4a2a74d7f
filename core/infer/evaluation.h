// Held-out loss and perplexity of a model over a whole token corpus: every window once, in
// order, in batches; the result is the mean over tokens, so a short last batch counts for
// exactly its tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/data/dataset.h"

namespace cr {

struct EvalResult {
  double loss = 0.0;        // mean cross-entropy per target token (nats)
  double perplexity = 0.0;  // exp(loss)
  int64_t tokens = 0;       // target tokens scored
  int64_t windows = 0;
  int64_t batches = 0;
};

// inputs, targets (B, T) int64 on the model's device -> the mean loss over their B x T tokens.
using MeanBatchLoss = std::function<torch::Tensor(const torch::Tensor& inputs, const torch::Tensor& targets)>;

// Scores windows 0, 1, ... of `corpus` in batches of batch_size (the last may be shorter),
// stopping after max_batches when given. Runs without autograd.
EvalResult evaluate_corpus(const TokenCorpus& corpus, const MeanBatchLoss& mean_loss, int64_t batch_size,
                           std::optional<int64_t> max_batches, torch::Device device);

struct EvalData {
  std::shared_ptr<const TokenCorpus> corpus;
  std::string description;  // one line for the log
};

// What `eval` reads: data.val when given; otherwise all of data.train (data.val_fraction is
// not applied); for synthetic data, the synthetic validation stream training evaluates on.
EvalData open_eval_data(const DataConfig& data, int64_t vocab_size, uint64_t seed);

}  // namespace cr
