// Writing a trained model as a Hugging Face model directory that transformers'
// from_pretrained loads: config.json, model.safetensors (or shards with an index),
// generation_config.json when the special tokens are known, and the tokenizer files.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/formats/hf_weights.h"
#include "core/formats/safetensors.h"
#include "models/model_spec.h"

namespace cr {

struct HfExportOptions {
  std::string checkpoint;  // a checkpoint directory, or a checkpoint root (its newest checkpoint)
  std::string out_dir;
  std::optional<std::string> tokenizer_dir;  // tokenizer files to copy next to the weights; else the run's
  DType dtype = DType::F32;                  // F32, BF16 or F16
  int64_t max_shard_bytes = kDefaultMaxShardBytes;
};

struct HfExportResult {
  std::string checkpoint;  // the checkpoint directory actually read
  ModelSpec spec;
  std::vector<std::string> files;  // every file written or copied
  // Without options.tokenizer_dir: the run's data.tokenizer_dir the tokenizer files came from
  // (or why they did not); "" when the run had none.
  std::string tokenizer_from;
};

HfExportResult export_hf_checkpoint(const HfExportOptions& options);

// The weights and config.json of a model whose fp32 parameters are `ours` (our names and
// layouts), converted to `dtype`. Removes weight files of an earlier export in out_dir first,
// so that a single file and a sharded index never coexist. Returns the files written.
std::vector<std::string> write_hf_model(const std::string& out_dir, const ModelSpec& spec,
                                        const std::vector<TensorView>& ours, DType dtype,
                                        int64_t max_shard_bytes = kDefaultMaxShardBytes);

// Copies the tokenizer files transformers reads (tokenizer.json, vocab.json + merges.txt,
// tokenizer.model, their configs) from dir to out_dir; OpenAI's encoder.json + vocab.bpe (or
// gpt2-encoder.json + gpt2-vocab.bpe) are copied as vocab.json + merges.txt, the same content
// under transformers' names, and llama2-tokenizer.model, or a SentencePiece model file given as
// `dir` itself, as tokenizer.model: every tokenizer `prepare` reads. cr::Error when dir has none.
std::vector<std::string> copy_tokenizer_files(const std::string& dir, const std::string& out_dir);

}  // namespace cr
