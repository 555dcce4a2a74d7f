// colossal-run export: a training checkpoint to another framework's format (today: a
// Hugging Face model directory).
#pragma once

#include <optional>
#include <string>

namespace cr {

struct ExportOptions {
  std::string checkpoint;  // --checkpoint: a checkpoint directory or a checkpoint root (newest)
  std::string to = "hf";   // --to: the target format
  std::string out_dir;     // --out
  std::optional<std::string> tokenizer_dir;  // --tokenizer-dir: tokenizer files to copy
  std::string dtype = "fp32";                // --dtype: fp32 | bf16 | fp16
  std::string max_shard_size = "5GB";        // --max-shard-size: e.g. 5GB, 500MB, 2GiB, bytes
};

int run_export_command(const ExportOptions& options);

}  // namespace cr
