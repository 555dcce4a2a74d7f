// `colossal-run report RUN_DIR... [-o FILE]`: the runs' metrics as one self-contained HTML page.
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "cmd/commands.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/report/report_page.h"
#include "core/report/run_metrics.h"

namespace cr {

int run_report_command(const ReportOptions& options) {
  std::vector<RunMetrics> runs;
  std::set<std::string> labels;
  for (const std::string& dir : options.run_dirs) {
    runs.push_back(read_run_metrics(dir));
    // Runs from different parents may share a name; the legend tells them apart by their order.
    const std::string name = runs.back().label;
    for (int n = 2; !labels.insert(runs.back().label).second; ++n) runs.back().label = fmt::format("{} ({})", name, n);
  }
  const std::string page = render_report_page(runs);
  std::ofstream out(options.output, std::ios::binary | std::ios::trunc);
  out << page;
  out.close();
  if (!out) fail("{}: cannot write the report", options.output);
  print0("wrote {} ({} run{}, {} KiB)", options.output, runs.size(), runs.size() == 1 ? "" : "s", page.size() / 1024);
  return 0;
}

}  // namespace cr
