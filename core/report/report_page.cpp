#include "core/report/report_page.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace cr {
namespace {

// Geometry of every chart, in SVG user units.
constexpr double kWidth = 720, kHeight = 300, kLeft = 80, kRight = 20, kTop = 16, kBottom = 40;
constexpr double kMargin = 0.04;      // of the value range, above and below, so that lines clear the frame
constexpr size_t kMostPoints = 2000;  // per polyline; longer series are thinned evenly
constexpr const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct SeriesStyle {
  const char* field;
  const char* role;  // what the line is, for its title
  bool dashed;
};

struct Chart {
  const char* id;
  const char* title;
  double scale;  // values are divided by it (bytes to GiB)
  std::vector<SeriesStyle> series;
};

const std::vector<Chart>& charts() {
  static const std::vector<Chart> all = {
      {"loss",
       "loss (solid: training, dashed: validation)",
       1.0,
       {{"loss", "training", false}, {"val_loss", "validation", true}}},
      {"lr", "learning rate", 1.0, {{"lr", "learning rate", false}}},
      {"grad_norm", "gradient norm (before clipping)", 1.0, {{"grad_norm", "gradient norm", false}}},
      {"tokens_per_s", "tokens/s", 1.0, {{"tokens_per_s", "tokens/s", false}}},
      {"memory", "peak memory, GiB (solid: host, dashed: device)", 1024.0 * 1024.0 * 1024.0,
       {{"peak_host_bytes", "host", false}, {"peak_device_bytes", "device", true}}},
  };
  return all;
}

std::string escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* colour(size_t run) { return kColours[run % std::size(kColours)]; }

// A series worth drawing: some point, and not all zero (device memory on CPUs).
bool drawn(const std::vector<SeriesPoint>* points) {
  return points && std::any_of(points->begin(), points->end(), [](const SeriesPoint& p) { return p.value != 0.0; });
}

const std::vector<SeriesPoint>* find_series(const RunMetrics& run, const char* field) {
  const auto found = run.series.find(field);
  return found == run.series.end() ? nullptr : &found->second;
}

// Whole numbers up to a billion in full (tokens/s), the rest in 4 significant digits.
std::string tick_label(double tick) {
  return std::abs(tick) >= 1e4 && std::abs(tick) < 1e9 ? fmt::format("{:.0f}", tick) : fmt::format("{:.4g}", tick);
}

std::string render_chart(const Chart& chart, const std::vector<RunMetrics>& runs) {
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const RunMetrics& run : runs) {
    for (const SeriesStyle& style : chart.series) {
      const auto* points = find_series(run, style.field);
      if (!drawn(points)) continue;
      for (const SeriesPoint& p : *points) {
        if (!std::isfinite(p.value)) continue;
        x_lo = std::min(x_lo, p.step), x_hi = std::max(x_hi, p.step);
        y_lo = std::min(y_lo, p.value / chart.scale), y_hi = std::max(y_hi, p.value / chart.scale);
      }
    }
  }
  std::string out = fmt::format("<section class=\"chart\" id=\"{}\">\n<h2>{}</h2>\n", chart.id, escape(chart.title));
  out += fmt::format(
      "<svg viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{} against step\">\n", kWidth,
      kHeight, kWidth, kHeight, escape(chart.title));
  if (!(x_lo <= x_hi)) {
    out += fmt::format("<text class=\"empty\" x=\"{}\" y=\"{}\">no data</text>\n</svg>\n</section>\n", kWidth / 2,
                       kHeight / 2);
    return out;
  }
  if (x_hi == x_lo) x_lo -= 1, x_hi += 1;
  if (y_hi == y_lo) {
    const double pad = y_lo == 0 ? 1.0 : std::abs(y_lo) * 0.1;
    y_lo -= pad, y_hi += pad;
  }
  const double margin = (y_hi - y_lo) * kMargin;
  y_lo -= margin, y_hi += margin;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  const auto x_of = [&](double step) { return kLeft + (step - x_lo) / (x_hi - x_lo) * plot_w; };
  const auto y_of = [&](double value) { return kTop + (y_hi - value) / (y_hi - y_lo) * plot_h; };
  out += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n", kLeft, kTop, plot_w,
                     plot_h);
  for (const double tick : axis_ticks(y_lo, y_hi)) {
    const double y = y_of(tick);
    out += fmt::format("<line class=\"grid\" x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\"/>", kLeft, y,
                       kLeft + plot_w, y);
    out += fmt::format("<text class=\"tick y\" x=\"{}\" y=\"{:.1f}\">{}</text>\n", kLeft - 6, y + 4, tick_label(tick));
  }
  for (const double tick : axis_ticks(x_lo, x_hi)) {
    const double x = x_of(tick);
    out += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\"/>", x, kTop, x,
                       kTop + plot_h);
    out += fmt::format("<text class=\"tick x\" x=\"{:.1f}\" y=\"{}\">{:.6g}</text>\n", x, kTop + plot_h + 16, tick);
  }
  out += fmt::format("<text class=\"axis\" x=\"{}\" y=\"{}\">step</text>\n", kLeft + plot_w / 2, kHeight - 4);
  for (size_t r = 0; r < runs.size(); ++r) {
    for (const SeriesStyle& style : chart.series) {
      const auto* points = find_series(runs[r], style.field);
      if (!drawn(points)) continue;
      const size_t stride = (points->size() + kMostPoints - 1) / kMostPoints;
      std::string coordinates;
      for (size_t i = 0; i < points->size(); ++i) {
        if (i % stride != 0 && i + 1 != points->size()) continue;
        const SeriesPoint& p = (*points)[i];
        if (!std::isfinite(p.value)) continue;
        coordinates += fmt::format("{}{:.1f},{:.1f}", coordinates.empty() ? "" : " ", x_of(p.step),
                                   y_of(p.value / chart.scale));
      }
      out += fmt::format(
          "<polyline class=\"series{}\" data-run=\"{}\" data-series=\"{}\" stroke=\"{}\" points=\"{}\"><title>{}: "
          "{}</title></polyline>\n",
          style.dashed ? " dashed" : "", escape(runs[r].label), style.field, colour(r), coordinates,
          escape(runs[r].label), style.role);
    }
  }
  out += "</svg>\n</section>\n";
  return out;
}

std::string optional_number(const std::optional<double>& value, const char* format) {
  return value ? fmt::format(fmt::runtime(format), *value) : "&ndash;";
}

}  // namespace

std::vector<double> axis_ticks(double lo, double hi) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double rough = (hi - lo) / 5.0;
  const double power = std::pow(10.0, std::floor(std::log10(rough)));
  const double fraction = rough / power;
  const double step = (fraction < 1.5 ? 1.0 : fraction < 3.5 ? 2.0 : fraction < 7.5 ? 5.0 : 10.0) * power;
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step); k * step <= hi + step * 1e-9; k += 1.0) {
    const double tick = k * step;
    ticks.push_back(std::abs(tick) < step * 1e-9 ? 0.0 : tick);
  }
  return ticks;
}

std::string render_report_page(const std::vector<RunMetrics>& runs) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>colossal-run report</title>\n"
      "<style>\n"
      "body { font: 14px sans-serif; margin: 24px; color: #222; }\n"
      "h2 { font-size: 15px; margin: 20px 0 4px; }\n"
      "table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: right; } "
      "th:first-child, td:first-child { text-align: left; white-space: nowrap; }\n"
      ".swatch { display: inline-block; width: 14px; height: 4px; vertical-align: middle; margin-right: 6px; }\n"
      "svg .frame { fill: none; stroke: #888; } svg .grid { stroke: #e4e4e4; }\n"
      "svg .tick, svg .axis, svg .empty { font-size: 11px; fill: #555; } svg .tick.y { text-anchor: end; }\n"
      "svg .tick.x, svg .axis, svg .empty { text-anchor: middle; }\n"
      "svg .series { fill: none; stroke-width: 1.5; } svg .series.dashed { stroke-dasharray: 5 3; }\n"
      "</style>\n</head>\n<body>\n<h1>colossal-run report</h1>\n";
  out += "<table class=\"runs\">\n<tr><th>run</th><th>id</th><th>steps</th><th>final loss</th>"
         "<th>best validation loss</th><th>mean tokens/s</th><th>wall time, s</th></tr>\n";
  for (size_t r = 0; r < runs.size(); ++r) {
    const RunMetrics& run = runs[r];
    const auto* losses = find_series(run, "loss");
    const std::string steps = losses && !losses->empty() ? fmt::format("{:g}&ndash;{:g}", losses->front().step,
                                                                       losses->back().step)
                                                         : "&ndash;";
    out += fmt::format(
        "<tr class=\"run\"><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td><td>{}</td><td>{:.1f}</td></tr>\n",
        colour(r), escape(run.label), escape(run.run), steps, optional_number(run.final_loss, "{:.4f}"),
        optional_number(run.best_val_loss, "{:.4f}"), optional_number(run.mean_tokens_per_s, "{:.0f}"), run.wall_s);
  }
  out += "</table>\n";
  for (const Chart& chart : charts()) out += render_chart(chart, runs);
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace cr
