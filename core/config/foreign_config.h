// `colossal-run convert-config`: DeepSpeed's JSON config and Colossal-AI's legacy Python config
// (its literal form, python_literal.h) translated into ours, key by key as docs/colossal-ai.md
// lists them. What has no equivalent here is named with the reason, never dropped silently.
#pragma once

#include <string>
#include <vector>

namespace cr {

struct ConvertedConfig {
  std::string yaml;                   // our config: only the keys the source set, loadable as is
  std::vector<std::string> notes;     // "source key -> ours: how", where not one to one
  std::vector<std::string> unmapped;  // "source key: why it has no equivalent"
};

// `text` of a DeepSpeed JSON config. cr::Error "source: ..." when it is not a JSON object.
ConvertedConfig convert_deepspeed_config(const std::string& text, const std::string& source_name);
// `text` of a Colossal-AI legacy config (`parallel = dict(...)`, `zero = dict(...)`, ...).
ConvertedConfig convert_colossalai_config(const std::string& text, const std::string& source_name);
// By the file's extension: .json DeepSpeed, .py Colossal-AI. cr::Error naming the file when it
// cannot be read or is neither.
ConvertedConfig convert_config_file(const std::string& path);

}  // namespace cr
