#include "cmd/commands.h"
#include "core/base/log.h"
#include "core/data/prepare.h"
#include "core/data/shard_tokenizer.h"
#include "core/base/strings.h"
#include "core/text/tokenizer.h"

namespace cr {

int run_prepare_command(const PrepareCommandOptions& options) {
  const auto tokenizer = make_tokenizer(options.tokenizer, options.tokenizer_dir);
  PrepareOptions prepare;
  prepare.inputs = options.inputs;
  prepare.output_prefix = options.output_prefix;
  prepare.tokenizer = tokenizer.get();
  prepare.shard_tokens = options.shard_tokens;
  prepare.val_fraction = options.val_fraction;
  const auto report = prepare_shards(prepare);
  write_shard_tokenizer(options.output_prefix, {options.tokenizer, options.tokenizer_dir, tokenizer->vocab_size(), ""});
  for (const auto& shard : report.train) print0("train {} ({} tokens)", shard.path, with_thousands(shard.tokens));
  for (const auto& shard : report.val) print0("val   {} ({} tokens)", shard.path, with_thousands(shard.tokens));
  print0("{} documents, {} train tokens, {} val tokens, tokenizer {} (vocab {})", report.documents,
         with_thousands(report.train_tokens), with_thousands(report.val_tokens), tokenizer->name(),
         tokenizer->vocab_size());
  print0("tokenizer recorded in {}_tokenizer.json: training on these shards uses it without data.tokenizer",
         options.output_prefix);
  return 0;
}

}  // namespace cr
