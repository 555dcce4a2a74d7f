#include "core/infer/evaluation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/base/error.h"

namespace cr {

EvalResult evaluate_corpus(const TokenCorpus& corpus, const MeanBatchLoss& mean_loss, int64_t batch_size,
                           std::optional<int64_t> max_batches, torch::Device device) {
  if (batch_size < 1) fail("evaluation: the batch size must be at least 1, got {}", batch_size);
  if (max_batches && *max_batches < 1) fail("evaluation: max_batches must be at least 1, got {}", *max_batches);
  torch::NoGradGuard no_grad;
  const int64_t T = corpus.seq_len();
  const int64_t windows = corpus.num_windows();
  int64_t batches = (windows + batch_size - 1) / batch_size;
  if (max_batches) batches = std::min(batches, *max_batches);

  EvalResult result;
  double loss_sum = 0.0;  // sum of per-token losses, in double over the whole corpus
  std::vector<int64_t> window(T + 1);
  for (int64_t batch = 0; batch < batches; ++batch) {
    const int64_t first = batch * batch_size;
    const int64_t rows = std::min(batch_size, windows - first);
    auto inputs = torch::empty({rows, T}, torch::kLong);
    auto targets = torch::empty({rows, T}, torch::kLong);
    for (int64_t row = 0; row < rows; ++row) {
      corpus.read_window(first + row, window.data());
      std::copy(window.begin(), window.end() - 1, inputs[row].data_ptr<int64_t>());
      std::copy(window.begin() + 1, window.end(), targets[row].data_ptr<int64_t>());
    }
    const double batch_loss = mean_loss(inputs.to(device), targets.to(device)).item<double>();
    if (!std::isfinite(batch_loss)) fail("evaluation: loss is {} on windows {}..{}", batch_loss, first, first + rows - 1);
    loss_sum += batch_loss * static_cast<double>(rows * T);
    result.tokens += rows * T;
    result.windows += rows;
    result.batches += 1;
  }
  if (result.tokens == 0) fail("evaluation: the corpus has no window of {} tokens", T + 1);
  result.loss = loss_sum / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.loss);
  return result;
}

EvalData open_eval_data(const DataConfig& data, int64_t vocab_size, uint64_t seed) {
  if (data.format == "synthetic" || !data.val.empty()) {
    auto splits = open_data(data, vocab_size, seed);
    return {splits.val, splits.description};
  }
  DataConfig all_of_train = data;
  all_of_train.val_fraction = 0.0;
  auto splits = open_data(all_of_train, vocab_size, seed);
  return {splits.train, splits.description};
}

}  // namespace cr
