// Pictures of runs: the report page and the metrics reader behind it (on metrics.jsonl files
// written here), and TensorBoard's event-file encoding.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>


#include "core/report/report_page.h"
#include "core/report/run_metrics.h"
#include "core/base/crc32.h"
#include "core/formats/tfevents.h"
#include "tests/temp_dir.h"
#include "tests/tfevents_reader.h"

using namespace cr;
namespace fs = std::filesystem;

namespace {

// A fresh directory `name` inside the test's temporary one.
fs::path fresh_dir(const test::TempDir& tmp, const std::string& name) {
  const fs::path dir = tmp.path() / name;
  fs::create_directories(dir);
  return dir;
}

void write_lines(const fs::path& file, const std::vector<std::string>& lines) {
  std::ofstream out(file);
  for (const auto& line : lines) out << line << "\n";
}

// A run of `steps` steps: loss falling from `first_loss` by 0.5 a step, an evaluation every 2.
fs::path write_run(const test::TempDir& tmp, const std::string& name, int steps, double first_loss) {
  const fs::path dir = fresh_dir(tmp, name);
  std::vector<std::string> lines;
  for (int step = 1; step <= steps; ++step) {
    lines.push_back(R"({"kind":"train","run":"00000000000000ab","step":)" + std::to_string(step) +
                    R"(,"loss":)" + std::to_string(first_loss - 0.5 * (step - 1)) +
                    R"(,"lr":0.001,"grad_norm":1.5,"tokens_per_s":1000,)"
                    R"("peak_host_bytes":1073741824,"peak_device_bytes":0})");
    if (step % 2 == 0) {
      lines.push_back(R"({"kind":"eval","run":"00000000000000ab","step":)" + std::to_string(step) +
                      R"(,"val_loss":)" + std::to_string(first_loss - 0.4 * step) + "}");
    }
  }
  lines.push_back(R"({"kind":"summary","run":"00000000000000ab","step":)" + std::to_string(steps) +
                  R"(,"first_step":0,"wall_s":12.5,"mean_tokens_per_s":1000,"final_loss":1.25,"best_val_loss":null})");
  write_lines(dir / "metrics.jsonl", lines);
  return dir;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The points of the polyline of `run`'s `series` in the page.
std::vector<std::pair<double, double>> polyline(const std::string& page, const std::string& run,
                                                const std::string& series) {
  const std::regex line("data-run=\"" + run + "\" data-series=\"" + series +
                        "\" stroke=\"[^\"]+\" points=\"([^\"]*)\"");
  std::smatch match;
  if (!std::regex_search(page, match, line)) return {};
  std::vector<std::pair<double, double>> points;
  std::istringstream in(match[1].str());
  for (std::string pair; in >> pair;) {
    const auto comma = pair.find(',');
    points.emplace_back(std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1)));
  }
  return points;
}

}  // namespace

TEST_CASE("axis ticks are 1, 2 or 5 x 10^k inside the range", "[report]") {
  const auto check_ticks = [](double lo, double hi, const std::vector<double>& expected) {
    INFO(lo << " to " << hi);
    const auto ticks = axis_ticks(lo, hi);
    REQUIRE(ticks.size() == expected.size());
    for (size_t i = 0; i < ticks.size(); ++i) CHECK(ticks[i] == Approx(expected[i]).margin(1e-12));
  };
  check_ticks(0.0, 1.0, {0.0, 0.2, 0.4, 0.6, 0.8, 1.0});
  check_ticks(2.3, 7.9, {3.0, 4.0, 5.0, 6.0, 7.0});
  check_ticks(-10.0, 10.0, {-10.0, -5.0, 0.0, 5.0, 10.0});
  check_ticks(1e-4, 3e-4, {1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4});
  check_ticks(1.0, 1000.0, {200.0, 400.0, 600.0, 800.0, 1000.0});
}

TEST_CASE("metrics.jsonl is read back as series against step", "[report]") {
  test::TempDir tmp;
  const RunMetrics run = read_run_metrics(write_run(tmp, "short", 4, 3.0));
  CHECK(run.label == "short");
  CHECK(run.run == "00000000000000ab");
  REQUIRE(run.series.at("loss").size() == 4);
  CHECK(run.series.at("loss").back().step == 4);
  CHECK(run.series.at("loss").back().value == Approx(1.5));
  REQUIRE(run.series.at("val_loss").size() == 2);
  CHECK(run.series.at("val_loss").front().value == Approx(2.2));
  CHECK(run.series.at("peak_host_bytes").front().value == 1073741824.0);
  CHECK(run.final_loss == 1.25);
  CHECK_FALSE(run.best_val_loss);
  CHECK(run.wall_s == 12.5);

  // A killed run's torn last line is dropped; a bad line elsewhere is named.
  const fs::path torn = write_run(tmp, "torn", 2, 3.0);
  { std::ofstream(torn / "metrics.jsonl", std::ios::app) << R"({"kind":"train","st)"; }
  CHECK(read_run_metrics(torn).series.at("loss").size() == 2);
  const fs::path bad = fresh_dir(tmp, "bad");
  write_lines(bad / "metrics.jsonl",
              {R"({"kind":"train","step":1,"loss":2})", "not json", R"({"kind":"train","step":2})"});
  CHECK_THROWS_WITH(read_run_metrics(bad), Catch::Contains("bad/metrics.jsonl:2: not a metrics record"));
  CHECK_THROWS_WITH(read_run_metrics(fresh_dir(tmp, "empty")), Catch::Contains("empty: no metrics.jsonl"));
}

TEST_CASE("the report page overlays runs on self-contained SVG charts", "[report]") {
  test::TempDir tmp;
  std::vector<RunMetrics> runs = {read_run_metrics(write_run(tmp, "long", 10, 6.0)),
                                  read_run_metrics(write_run(tmp, "short", 4, 3.0))};
  runs[1].label = "short <b>";  // escaped in the page
  const std::string page = render_report_page(runs);
  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(page.find("</html>") != std::string::npos);
  // Nothing fetched, nothing run.
  CHECK(page.find("<script") == std::string::npos);
  CHECK(page.find("http") == std::string::npos);
  CHECK(page.find("src=") == std::string::npos);
  CHECK(page.find("short <b>") == std::string::npos);
  CHECK(page.find("short &lt;b&gt;") != std::string::npos);
  // Five charts, each run in each; validation loss dashed; no device memory on a CPU run.
  CHECK(count(page, "<svg ") == 5);
  for (const char* chart : {"loss", "lr", "grad_norm", "tokens_per_s", "memory"}) {
    CHECK(page.find(std::string("<section class=\"chart\" id=\"") + chart + "\">") != std::string::npos);
  }
  CHECK(count(page, "data-run=\"long\"") == 6);  // loss, val_loss, lr, grad_norm, tokens/s, host memory
  CHECK(count(page, "data-series=\"val_loss\"") == 2);
  CHECK(count(page, "class=\"series dashed\"") == 2);
  CHECK(count(page, "data-series=\"peak_device_bytes\"") == 0);
  CHECK(count(page, "<tr class=\"run\">") == 2);

  // Loss: steps 1-10 span the plot's width (x 80 to 700); values from 6.0 down to the lowest, the
  // short run's validation loss at step 4, 1.4, with 4% of that range above and below, span its
  // height (y 16 to 260).
  const double top = 6.0 + 0.04 * 4.6, bottom = 1.4 - 0.04 * 4.6;
  const auto y_of = [&](double loss) { return 16.0 + (top - loss) / (top - bottom) * 244.0; };
  const auto loss = polyline(page, "long", "loss");
  REQUIRE(loss.size() == 10);
  CHECK(loss.front().first == Approx(80.0));
  CHECK(loss.front().second == Approx(y_of(6.0)).margin(0.05));
  CHECK(loss.back().first == Approx(700.0));
  CHECK(loss.back().second == Approx(y_of(1.5)).margin(0.05));
  const auto val = polyline(page, "long", "val_loss");
  REQUIRE(val.size() == 5);
  CHECK(val.back().second == Approx(y_of(2.0)).margin(0.05));
  CHECK(polyline(page, "short &lt;b&gt;", "val_loss").back().second == Approx(y_of(1.4)).margin(0.05));
  const auto short_loss = polyline(page, "short &lt;b&gt;", "loss");
  REQUIRE(short_loss.size() == 4);
  CHECK(short_loss.back().first == Approx(80.0 + 3.0 / 9.0 * 620.0).margin(0.05));
  // A constant series sits mid-height (its range widened by 10% each way).
  const auto lr = polyline(page, "long", "lr");
  REQUIRE_FALSE(lr.empty());
  CHECK(lr.front().second == Approx(16.0 + 244.0 / 2).margin(0.05));
}

TEST_CASE("a chart without data says so", "[report]") {
  RunMetrics empty;
  empty.label = "nothing";
  const std::string page = render_report_page({empty});
  CHECK(count(page, "<svg ") == 5);
  CHECK(count(page, ">no data</text>") == 5);
}

TEST_CASE("TensorBoard events are protocol buffers in CRC-checked records", "[report][tensorboard]") {
  test::TempDir tmp;
  // Event{wall_time: 1.0, step: 2, summary: {value: [{tag: "a", simple_value: 1.0}]}}, by hand:
  // field 1 fixed64, field 2 varint, field 5 bytes holding Summary field 1 bytes holding
  // Value's field 1 (tag) and field 2 fixed32.
  const std::string expected(
      "\x09\x00\x00\x00\x00\x00\x00\xf0\x3f\x10\x02\x2a\x0a\x0a\x08\x0a\x01\x61\x15\x00\x00\x80\x3f", 23);
  CHECK(encode_scalar_event(1.0, 2, {{"a", 1.0f}}) == expected);
  const std::string version = encode_file_version_event(0.5, "brain.Event:2");
  CHECK(version.substr(9, 4) == std::string("\x10\x00\x1a\x0d", 4));
  // A record: length (8 bytes, little-endian), its masked CRC, the data, the data's masked CRC.
  const std::string record = frame_record("abc");
  REQUIRE(record.size() == 8 + 4 + 3 + 4);
  CHECK(record.substr(0, 8) == std::string("\x03\0\0\0\0\0\0\0", 8));
  CHECK(record.substr(12, 3) == "abc");
  // The mask TensorBoard applies: rotate right by 15, add 0xa282ead8.
  const uint32_t crc = crc32c("abc", 3);
  CHECK(masked_crc32c("abc", 3) == ((crc >> 15) | (crc << 17)) + 0xa282ead8u);

  const fs::path dir = fresh_dir(tmp, "tensorboard");
  std::string path;
  {
    TfEventsWriter writer(dir.string());
    path = writer.path();
    writer.write_scalars(3, {{"train/loss", 2.5f}, {"train/lr", 1e-3f}});
    writer.write_scalars(4, {{"eval/val_loss", 2.25f}});
  }
  CHECK(fs::path(path).filename().string().rfind("events.out.tfevents.", 0) == 0);
  const auto events = test::read_tfevents(path);
  REQUIRE(events.size() == 3);
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[1].step == 3);
  CHECK(events[1].scalars == std::map<std::string, float>{{"train/loss", 2.5f}, {"train/lr", 1e-3f}});
  CHECK(events[1].wall_time > 1.7e9);
  CHECK(events[2].scalars.at("eval/val_loss") == 2.25f);
  // A flipped byte is caught by the record's CRC.
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-6, std::ios::end);
    file.put('\x7f');
  }
  CHECK_THROWS_WITH(test::read_tfevents(path), Catch::Contains("bad data CRC"));
  // A directory that cannot be made is named.
  write_lines(dir / "blocker", {"a file"});
  CHECK_THROWS_WITH(TfEventsWriter((dir / "blocker" / "tensorboard").string()),
                    Catch::Contains("blocker/tensorboard: cannot create the TensorBoard directory"));
}
