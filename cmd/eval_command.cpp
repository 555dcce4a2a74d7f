#include "cmd/eval_command.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "cmd/config_source.h"
#include "cmd/job.h"
#include "core/infer/evaluation.h"
#include "core/infer/inference_model.h"
#include "core/base/log.h"
#include "core/train/runtime.h"
#include "core/base/strings.h"

namespace cr {

int run_eval_command(const EvalCommandOptions& options, const LaunchEnvironment& launch) {
  announce_launch_rank(launch);
  const Config config = inference_layout(load_command_config(options.config));
  JobMembership job(launch, config);
  configure_threads(config.runtime, ranks_on_this_node());
  // Synthetic data never ends: it is scored over train.eval_batches unless --max-batches says otherwise.
  std::optional<int64_t> max_batches = options.max_batches;
  if (!max_batches && config.data.format == "synthetic") {
    max_batches = config.train.eval_batches;
    print0("eval: synthetic data has no end; scoring train.eval_batches = {} batches (--max-batches to choose)",
           *max_batches);
  }
  // Tensor-parallel ranks run the same batches, each with its slices of every layer.
  std::string weights_from, description;
  const auto result = job.run(config, [&](const ParallelContext& context) {
    InferenceModel loaded = load_inference_model(config, context);
    weights_from = loaded.weights_from;
    const EvalData data =
        open_eval_data(config.data, loaded.spec.vocab_size, static_cast<uint64_t>(config.train.seed));
    description = data.description;
    return evaluate_corpus(
        *data.corpus, [&](const torch::Tensor& inputs, const torch::Tensor& targets) {
          return loaded.model->loss(inputs, targets);
        },
        config.train.micro_batch_size, max_batches, loaded.device);
  });
  if (log_rank() != 0) return 0;

  print0("eval: loss {:.4f}, perplexity {:.2f} over {} tokens ({} windows of {}, {} batches) | weights {} | {}",
         result.loss, result.perplexity, with_thousands(result.tokens), with_thousands(result.windows),
         config.data.seq_len, result.batches, weights_from, description);
  const nlohmann::json summary = {{"loss", result.loss}, {"perplexity", result.perplexity}, {"tokens", result.tokens}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

}  // namespace cr
