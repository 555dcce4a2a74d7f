#include "core/report/run_metrics.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/base/error.h"

namespace cr {
namespace {

void add_point(RunMetrics& metrics, const std::string& field, double step, const nlohmann::json& record) {
  const auto found = record.find(field);
  if (found == record.end() || !found->is_number()) return;
  metrics.series[field].push_back({step, found->get<double>()});
}

}  // namespace

RunMetrics read_run_metrics(const std::filesystem::path& run_dir) {
  const std::filesystem::path path = run_dir / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) {
    fail("{}: no metrics.jsonl (is it a run directory? `train` writes it under runtime.run_dir)", run_dir.string());
  }
  RunMetrics metrics;
  metrics.label = std::filesystem::absolute(run_dir).lexically_normal().filename().string();
  if (metrics.label.empty()) metrics.label = std::filesystem::absolute(run_dir).parent_path().filename().string();
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const auto record = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    const bool whole = record.is_object() && record.contains("step") && record["step"].is_number() &&
                       record.contains("kind") && record["kind"].is_string();
    if (!whole) {
      if (i + 1 == lines.size()) break;  // torn by a killed run
      fail("{}:{}: not a metrics record (a JSON object with kind and step)", path.string(), i + 1);
    }
    if (record.contains("run") && record["run"].is_string()) metrics.run = record["run"].get<std::string>();
    const auto step = record["step"].get<double>();
    const std::string kind = record["kind"].get<std::string>();
    if (kind == "train") {
      for (const char* field : {"loss", "lr", "grad_norm", "tokens_per_s", "peak_host_bytes", "peak_device_bytes"}) {
        add_point(metrics, field, step, record);
      }
    } else if (kind == "eval") {
      add_point(metrics, "val_loss", step, record);
    } else if (kind == "summary") {
      const auto number = [&](const char* field) -> std::optional<double> {
        const auto found = record.find(field);
        return found != record.end() && found->is_number() ? std::optional(found->get<double>()) : std::nullopt;
      };
      metrics.final_loss = number("final_loss");
      metrics.best_val_loss = number("best_val_loss");
      metrics.mean_tokens_per_s = number("mean_tokens_per_s");
      metrics.wall_s += number("wall_s").value_or(0.0);
    }
  }
  for (auto& [field, points] : metrics.series) {
    std::stable_sort(points.begin(), points.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  }
  return metrics;
}

}  // namespace cr
