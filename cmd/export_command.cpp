#include "cmd/export_command.h"

#include <cctype>
#include <cmath>

#include "core/base/error.h"
#include "core/train/hf_export.h"
#include "core/base/log.h"
#include "core/base/strings.h"

namespace cr {

int run_export_command(const ExportOptions& options) {
  if (options.to != "hf") fail("export --to: unknown format '{}' (supported: hf)", options.to);
  HfExportOptions hf;
  hf.checkpoint = options.checkpoint;
  hf.out_dir = options.out_dir;
  hf.tokenizer_dir = options.tokenizer_dir;
  if (options.dtype == "fp32") {
    hf.dtype = DType::F32;
  } else if (options.dtype == "bf16") {
    hf.dtype = DType::BF16;
  } else if (options.dtype == "fp16") {
    hf.dtype = DType::F16;
  } else {
    fail("export --dtype: unknown dtype '{}' (fp32, bf16 or fp16)", options.dtype);
  }
  hf.max_shard_bytes = parse_byte_size(options.max_shard_size, "export --max-shard-size");
  const auto result = export_hf_checkpoint(hf);
  for (const auto& file : result.files) print0("wrote {}", file);
  if (!result.tokenizer_from.empty()) {
    print0("tokenizer files from the run's data.tokenizer_dir {}", result.tokenizer_from);
  }
  print0("exported {} ({} parameters, arch {}) to {} as Hugging Face {}", result.checkpoint,
         with_thousands(parameter_count(result.spec)), result.spec.arch, options.out_dir, options.dtype);
  return 0;
}

}  // namespace cr
