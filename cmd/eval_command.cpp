#include "cmd/eval_command.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "cmd/config_source.h"
#include "core/infer/evaluation.h"
#include "core/infer/inference_model.h"
#include "core/base/log.h"
#include "core/train/runtime.h"
#include "core/base/strings.h"

namespace cr {

int run_eval_command(const EvalCommandOptions& options) {
  const Config config = load_command_config(options.config);
  configure_threads(config.runtime);
  InferenceModel loaded = load_inference_model(config);
  const EvalData data =
      open_eval_data(config.data, loaded.spec.vocab_size, static_cast<uint64_t>(config.train.seed));
  const auto result = evaluate_corpus(
      *data.corpus, [&](const torch::Tensor& inputs, const torch::Tensor& targets) {
        return loaded.model->loss(inputs, targets);
      },
      config.train.micro_batch_size, options.max_batches, loaded.device);

  print0("eval: loss {:.4f}, perplexity {:.2f} over {} tokens ({} windows of {}, {} batches) | weights {} | {}",
         result.loss, result.perplexity, with_thousands(result.tokens), with_thousands(result.windows),
         config.data.seq_len, result.batches, loaded.weights_from, data.description);
  const nlohmann::json summary = {{"loss", result.loss}, {"perplexity", result.perplexity}, {"tokens", result.tokens}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

}  // namespace cr
