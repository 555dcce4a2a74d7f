#include "cmd/export_command.h"

#include <cctype>
#include <cmath>

#include "core/base/error.h"
#include "core/train/hf_export.h"
#include "core/base/log.h"
#include "core/base/strings.h"

namespace cr {

int64_t parse_byte_size(const std::string& text, const std::string& option) {
  size_t end = 0;
  double value = 0;
  try {
    value = std::stod(text, &end);
  } catch (const std::exception&) {
    fail("{}: '{}' is not a size (e.g. 5GB, 500MB, 2GiB)", option, text);
  }
  std::string unit = text.substr(end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::pair<const char*, double> units[] = {{"", 1},         {"B", 1},          {"KB", 1e3},
                                                  {"MB", 1e6},     {"GB", 1e9},       {"KIB", 1024.0},
                                                  {"MIB", 1048576.0}, {"GIB", 1073741824.0}};
  for (const auto& [name, scale] : units) {
    if (unit == name) {
      const double bytes = std::floor(value * scale);
      if (!(bytes >= 1)) fail("{}: '{}' must be at least one byte", option, text);
      return static_cast<int64_t>(bytes);
    }
  }
  fail("{}: '{}' has an unknown unit '{}' (B, KB, MB, GB, KiB, MiB, GiB)", option, text, text.substr(end));
}

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
  print0("exported {} ({} parameters, arch {}) to {} as Hugging Face {}", result.checkpoint,
         with_thousands(parameter_count(result.spec)), result.spec.arch, options.out_dir, options.dtype);
  return 0;
}

}  // namespace cr
