// `colossal-run report`'s page: one self-contained HTML document (inline SVG, no script, nothing
// fetched) with a chart per quantity against step (loss and validation loss, learning rate,
// gradient norm, tokens/s, peak memory), every run overlaid in its own colour with a legend, and
// a table of the runs' summaries.
#pragma once

#include <string>
#include <vector>

#include "core/report/run_metrics.h"

namespace cr {

// Ticks for an axis over [lo, hi]: multiples of 1, 2 or 5 x 10^k, about five of them.
std::vector<double> axis_ticks(double lo, double hi);

std::string render_report_page(const std::vector<RunMetrics>& runs);

}  // namespace cr
