// Configs of test runs: YAML text in which RUN_DIR stands for the run's directory, with a fixed
// MFU peak so that no GEMM is measured at start-up.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/config/config.h"

namespace cr::test {

inline Config run_config(std::string yaml, const std::filesystem::path& run_dir, std::vector<std::string> overrides,
                         const std::string& source) {
  yaml.replace(yaml.find("RUN_DIR"), 7, run_dir.string());
  overrides.push_back("train.peak_flops=1.0e9");
  return load_config_text(yaml, source, overrides);
}

}  // namespace cr::test
