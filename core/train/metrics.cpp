#include "core/train/metrics.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/strings.h"

namespace cr {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

std::string format_step_line(const StepMetrics& m) {
  std::string line = fmt::format(
      "step {}/{} | loss {:.4f} | lr {:.3e} | grad_norm {:.3f} | {:.0f} tok/s | MFU {:.1f}% | "
      "{:.3f} s/step | peak host {}",
      m.step, m.total_steps, m.loss, m.lr, m.grad_norm, m.tokens_per_s, 100.0 * m.mfu, m.step_time_s,
      human_bytes(static_cast<double>(m.peak_host_bytes)));
  if (m.peak_device_bytes > 0) line += " | peak device " + human_bytes(static_cast<double>(m.peak_device_bytes));
  if (m.loss_scale > 0) line += fmt::format(" | loss scale {:g}", m.loss_scale);
  if (m.skipped) line += " | skipped: gradient overflow";
  if (m.pipeline_bubble) line += fmt::format(" | bubble {:.3f}", *m.pipeline_bubble);
  return line;
}

MetricsFile::MetricsFile(const std::string& path, int64_t resumed_step, std::string run, bool tensorboard)
    : run_(std::move(run)) {
  if (log_rank() != 0) return;
  if (resumed_step > 0) {
    // Kept: records up to the checkpoint's step; a torn last line of a killed run goes too.
    std::string kept;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const bool whole = record.is_object() && record.contains("step") && record["step"].is_number_integer();
      if (whole && record["step"].get<int64_t>() <= resumed_step) kept += line + "\n";
    }
    in.close();
    const std::string staged = path + ".resume-tmp";
    std::ofstream(staged, std::ios::trunc) << kept;
    if (std::rename(staged.c_str(), path.c_str()) != 0) fail("cannot replace metrics file '{}'", path);
  }
  file_ = std::fopen(path.c_str(), resumed_step > 0 ? "a" : "w");
  if (!file_) fail("cannot open metrics file '{}' for writing", path);
  if (tensorboard) {
    const auto dir = std::filesystem::path(path).parent_path() / "tensorboard";
    tensorboard_ = std::make_unique<TfEventsWriter>(dir.string());
  }
}

MetricsFile::~MetricsFile() {
  if (file_) std::fclose(file_);
}

void MetricsFile::write_line(const std::string& line) {
  if (!file_) return;
  std::fputs(line.c_str(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

void MetricsFile::write_step(const StepMetrics& m) {
  nlohmann::json j = {{"kind", "train"},          {"step", m.step}, {"run", run_}, {"tokens", m.tokens_seen},
                      {"loss", m.loss},           {"lr", m.lr},
                      {"grad_norm", m.grad_norm}, {"step_time_s", m.step_time_s},
                      {"tokens_per_s", m.tokens_per_s}, {"flops_per_s", m.flops_per_s},
                      {"mfu", m.mfu},             {"peak_host_bytes", m.peak_host_bytes},
                      {"peak_device_bytes", m.peak_device_bytes}, {"bytes_sent", m.bytes_sent}};
  j["time_s"] = {{"forward", m.forward_s},
                 {"backward", m.backward_s},
                 {"communication", m.communication_s},
                 {"optimizer", m.optimizer_s},
                 {"other", m.other_s}};
  j["state_bytes"] = {{"parameters", m.state.parameters},
                      {"master_weights", m.state.master_weights},
                      {"gradients", m.state.gradients},
                      {"optimizer_states", m.state.optimizer_states}};
  if (m.tiers.tiered) {
    j["tiers"] = {{"device_budget", m.tiers.device_budget}, {"device_peak", m.tiers.device_peak},
                  {"host_peak", m.tiers.host_peak}, {"host_to_device", m.tiers.host_to_device},
                  {"device_to_host", m.tiers.device_to_host}, {"nvme_bytes", m.tiers.nvme_bytes},
                  {"nvme_read", m.tiers.nvme_read}, {"nvme_written", m.tiers.nvme_written},
                  {"prefetched", m.tiers.prefetched},
                  {"transfer_s", m.tiers.copies.seconds}, {"exposed_transfer_s", m.tiers.copies.exposed}};
  }
  if (m.loss_scale > 0) {
    j["loss_scale"] = m.loss_scale;
    j["skipped"] = m.skipped;
  }
  if (m.pipeline_bubble) j["pipeline_bubble"] = *m.pipeline_bubble;
  write_line(j.dump());
  if (!tensorboard_) return;
  std::vector<std::pair<std::string, float>> scalars = {
      {"train/loss", m.loss},
      {"train/lr", m.lr},
      {"train/grad_norm", m.grad_norm},
      {"train/tokens_per_s", m.tokens_per_s},
      {"train/mfu", m.mfu},
      {"train/step_time_s", m.step_time_s},
      {"memory/peak_host_gib", static_cast<double>(m.peak_host_bytes) / kGiB}};
  if (m.peak_device_bytes > 0) {
    scalars.emplace_back("memory/peak_device_gib", static_cast<double>(m.peak_device_bytes) / kGiB);
  }
  if (m.loss_scale > 0) scalars.emplace_back("train/loss_scale", m.loss_scale);
  if (m.pipeline_bubble) scalars.emplace_back("train/pipeline_bubble", *m.pipeline_bubble);
  tensorboard_->write_scalars(m.step, scalars);
}

void MetricsFile::write_eval(int64_t step, double val_loss) {
  write_line(nlohmann::json{{"kind", "eval"},
                            {"step", step},
                            {"run", run_},
                            {"val_loss", val_loss},
                            {"perplexity", std::exp(val_loss)}}
                 .dump());
  if (tensorboard_) {
    tensorboard_->write_scalars(step, {{"eval/val_loss", val_loss}, {"eval/perplexity", std::exp(val_loss)}});
  }
}

void MetricsFile::write_summary(const RunTotals& totals) {
  nlohmann::json j = {{"kind", "summary"},
                      {"step", totals.last_step},
                      {"run", run_},
                      {"first_step", totals.first_step},
                      {"wall_s", totals.wall_s},
                      {"mean_tokens_per_s", totals.mean_tokens_per_s},
                      {"final_loss", totals.final_loss},
                      {"best_val_loss", nullptr}};
  if (totals.best_val_loss) j["best_val_loss"] = *totals.best_val_loss;
  write_line(j.dump());
}

ProgressReporter::ProgressReporter(int64_t first_step, int64_t total_steps, int64_t log_every, bool bar_allowed)
    : first_step_(first_step),
      total_steps_(total_steps),
      log_every_(log_every),
      bar_(bar_allowed && log_rank() == 0 && isatty(STDOUT_FILENO)) {}

void ProgressReporter::on_step(const StepMetrics& m) {
  elapsed_s_ += m.step_time_s;
  if (m.step % log_every_ == 0 || m.step == total_steps_ || m.step == first_step_ + 1) {
    print(format_step_line(m));
  }
  if (bar_) draw_bar(m);
}

void ProgressReporter::print(const std::string& line) {
  clear_bar();
  print0_line(line);
}

void ProgressReporter::finish() { clear_bar(); }

void ProgressReporter::clear_bar() {
  if (!bar_drawn_) return;
  std::fputs("\r\033[2K", stdout);
  std::fflush(stdout);
  bar_drawn_ = false;
}

void ProgressReporter::draw_bar(const StepMetrics& m) {
  const int width = 30;
  const double done = static_cast<double>(m.step) / static_cast<double>(total_steps_);
  const int filled = static_cast<int>(done * width);
  const int64_t steps_run = m.step - first_step_;
  const double eta = steps_run > 0 ? elapsed_s_ / steps_run * (total_steps_ - m.step) : 0.0;
  const auto eta_s = static_cast<int64_t>(eta);
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stdout, "\r\033[2K[%s] %lld/%lld loss %.4f %.0f tok/s ETA %lldh%02lldm%02llds", bar.c_str(),
               static_cast<long long>(m.step), static_cast<long long>(total_steps_), m.loss, m.tokens_per_s,
               static_cast<long long>(eta_s / 3600), static_cast<long long>(eta_s / 60 % 60),
               static_cast<long long>(eta_s % 60));
  std::fflush(stdout);
  bar_drawn_ = true;
}

}  // namespace cr
