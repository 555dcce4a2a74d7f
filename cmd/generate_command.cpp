#include "cmd/generate_command.h"

#include <cstdio>

#include "cmd/config_source.h"
#include "cmd/job.h"
#include "core/base/error.h"
#include "core/infer/generation.h"
#include "core/infer/inference_model.h"
#include "core/base/log.h"
#include "core/train/runtime.h"
#include "core/text/tokenizer.h"

namespace cr {

int run_generate_command(const GenerateCommandOptions& options, const LaunchEnvironment& launch) {
  set_info_to_stderr(true);
  announce_launch_rank(launch);
  const Config config = inference_layout(load_command_config(options.config));
  JobMembership job(launch, config);
  configure_threads(config.runtime, ranks_on_this_node());
  const auto tokenizer = make_tokenizer(config.data.tokenizer, config.data.tokenizer_dir);

  auto prompt_ids = tokenizer->encode(options.prompt, /*allow_special=*/true);
  // An empty prompt starts a fresh document, which is what the end-of-text token precedes.
  if (prompt_ids.empty()) prompt_ids.push_back(tokenizer->eot_id());
  GenerationOptions generation;
  generation.max_new_tokens = options.max_new_tokens;
  generation.sampling = {options.temperature, options.top_k, options.top_p};
  generation.seed = options.seed;
  generation.stop_token = tokenizer->eot_id();
  generation.vocab_limit = tokenizer->vocab_size();
  // Tensor-parallel ranks decode together: each holds its heads' keys and values, and the full
  // logits (summed from the vocabulary parts) are the same on every rank, so is each sample.
  std::string weights_from;
  const Generation result = job.run(config, [&](const ParallelContext& context) {
    InferenceModel loaded = load_inference_model(config, context);
    if (tokenizer->vocab_size() > loaded.spec.vocab_size) {
      fail("data.tokenizer: the {} tokenizer has {} tokens but the model's vocab_size is {}", tokenizer->name(),
           tokenizer->vocab_size(), loaded.spec.vocab_size);
    }
    weights_from = loaded.weights_from;
    const auto decoder = make_decoder(loaded);
    return generate(*decoder, std::vector<int64_t>(prompt_ids.begin(), prompt_ids.end()), generation);
  });
  if (log_rank() != 0) return 0;

  std::vector<uint32_t> new_ids(result.tokens.begin(), result.tokens.end());
  // The end-of-text token ends the completion; it is not part of its text.
  if (result.stop == StopReason::StopToken) new_ids.pop_back();
  print0("generate: {} prompt tokens + {} new ({}) | {} tokenizer | weights {}", prompt_ids.size(),
         result.tokens.size(), stop_reason_name(result.stop), tokenizer->name(), weights_from);
  const std::string text = tokenizer->decode(new_ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace cr
