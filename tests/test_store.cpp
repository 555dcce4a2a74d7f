#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_store.h"
#include "core/checkpoint/tensor_slices.h"
#include "core/base/crc32.h"
#include "core/base/error.h"
#include "core/formats/safetensors.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("cr-test-store-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

uint32_t crc32_bitwise(const unsigned char* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return ~c;
}

std::vector<unsigned char> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> bytes(n);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng());
  return bytes;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A safetensors file with a hand-written header, for the corrupt-file cases.
void write_raw_safetensors(const std::string& path, std::string header, const std::string& data) {
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  write_bytes(path, bytes + header + data);
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const cr::Error& e) {
    return e.what();
  }
  FAIL("expected a cr::Error");
  return "";
}

std::vector<std::string> hidden_entries(const fs::path& root) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name[0] == '.') found.push_back(name);
  }
  return found;
}

std::string commit_step(const std::string& root, int64_t step, const std::string& text, const std::string& run = "a") {
  cr::CheckpointWriter writer(root, step);
  writer.write_text("notes.txt", text);
  return writer.commit({{"run", run}});
}

}  // namespace

TEST_CASE("crc32 matches the standard check value", "[crc32]") {
  const char* check = "123456789";
  CHECK(cr::crc32(check, 9) == 0xCBF43926u);
  CHECK(cr::crc32_portable(check, 9) == 0xCBF43926u);
  CHECK(cr::crc32(nullptr, 0) == 0u);
  CHECK(cr::crc32(check + 4, 5, cr::crc32(check, 4)) == 0xCBF43926u);
}

TEST_CASE("crc32c matches the standard check values", "[crc32]") {
  CHECK(cr::crc32c("123456789", 9) == 0xE3069283u);  // RFC 3720's check value
  const std::string zeros(32, '\0');
  CHECK(cr::crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);  // RFC 3720 B.4
  CHECK(cr::crc32c(nullptr, 0) == 0u);
}

TEST_CASE("crc32 matches a bitwise reference for many lengths and alignments", "[crc32]") {
  const auto bytes = random_bytes((1 << 20) + 64, 7);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  for (size_t n : {1000, 4096, 4096 + 13, 65536 + 7, 1 << 20}) lengths.push_back(n);
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t n : lengths) {
      const unsigned char* p = bytes.data() + offset;
      const uint32_t expected = crc32_bitwise(p, n);
      INFO("offset " << offset << " length " << n);
      REQUIRE(cr::crc32(p, n) == expected);
      REQUIRE(cr::crc32_portable(p, n) == expected);
      const size_t split = n / 3;
      REQUIRE(cr::crc32(p + split, n - split, cr::crc32(p, split)) == expected);
    }
  }
}

TEST_CASE("crc32_file matches crc32 of the contents", "[crc32]") {
  TempDir dir;
  const auto bytes = random_bytes((9 << 20) + 5, 11);  // spans several read chunks
  write_bytes(dir / "blob", std::string(bytes.begin(), bytes.end()));
  CHECK(cr::crc32_file(dir / "blob") == cr::crc32(bytes.data(), bytes.size()));
  CHECK_THAT(error_of([&] { cr::crc32_file(dir / "absent"); }), Contains(dir / "absent"));
}

TEST_CASE("crc32 throughput on 256 MiB", "[crc32][benchmark]") {
  const size_t n = size_t{256} << 20;
  std::vector<unsigned char> buffer(n, 0x5A);
  const auto gbps = [&](uint32_t (*crc)(const void*, size_t, uint32_t)) {
    crc(buffer.data(), n, 0);  // warm-up: faults the pages in
    const auto start = std::chrono::steady_clock::now();
    volatile uint32_t sink = crc(buffer.data(), n, 0);
    (void)sink;
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    return static_cast<double>(n) / seconds.count() / 1e9;
  };
  const double fast = gbps(cr::crc32);
  const double portable = gbps(cr::crc32_portable);
  WARN("crc32 throughput: " << fast << " GB/s (table-driven fallback: " << portable << " GB/s)");
}

TEST_CASE("safetensors round trip", "[safetensors]") {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  std::vector<float> weights = {1.5f, -2.0f, 3.25f, 0.0f, 5.0f, 6.5f};
  std::vector<uint16_t> bf16 = {0x3F80, 0x4000, 0xC040, 0x0000};
  int64_t scalar = -42;
  std::vector<double> f64 = {0.125, -8.0};
  std::vector<int8_t> i8 = {-1, 2, -3, 4, -5};
  std::vector<uint8_t> flags = {1, 0, 1};
  std::vector<int32_t> i32 = {7, -9, 11};
  std::vector<cr::TensorView> tensors = {
      {"layers.1.weight", cr::DType::F32, {2, 3}, weights.data(), 24},
      {"layers.0.bias", cr::DType::BF16, {4}, bf16.data(), 8},
      {"step", cr::DType::I64, {}, &scalar, 8},
      {"empty", cr::DType::U8, {0, 5}, nullptr, 0},
      {"f64", cr::DType::F64, {1, 1, 2}, f64.data(), 16},
      {"i8", cr::DType::I8, {5}, i8.data(), 5},
      {"mask", cr::DType::BOOL, {3}, flags.data(), 3},
      {"counts", cr::DType::I32, {3, 1}, i32.data(), 12},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "10"}};
  cr::write_safetensors(path, tensors, metadata);

  cr::SafetensorsFile file(path);
  CHECK(file.path() == path);
  CHECK(file.metadata() == metadata);
  std::vector<std::string> given_order;
  for (const auto& t : tensors) given_order.push_back(t.name);
  CHECK(file.names() == given_order);
  CHECK_FALSE(file.contains("missing"));
  for (const auto& expected : tensors) {
    INFO(expected.name);
    REQUIRE(file.contains(expected.name));
    const cr::TensorView& got = file.get(expected.name);
    CHECK(got.name == expected.name);
    CHECK(got.dtype == expected.dtype);
    CHECK(got.shape == expected.shape);
    REQUIRE(got.nbytes == expected.nbytes);
    if (got.nbytes > 0) CHECK(std::memcmp(got.data, expected.data, got.nbytes) == 0);
  }

  // The header is 8-byte aligned and lists "__metadata__" first, then tensors by name.
  const std::string raw = read_bytes(path);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<uint8_t>(raw[i]);
  CHECK(header_length % 8 == 0);
  CHECK(raw.size() == 8 + header_length + 24 + 8 + 8 + 16 + 5 + 3 + 12);
  const auto header = nlohmann::ordered_json::parse(raw.substr(8, header_length));
  std::vector<std::string> keys;
  for (const auto& item : header.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"__metadata__", "counts", "empty", "f64", "i8",
                                         "layers.0.bias", "layers.1.weight", "mask", "step"});
  CHECK(header["layers.1.weight"]["data_offsets"] == nlohmann::ordered_json::array({0, 24}));
  CHECK(header["step"]["shape"] == nlohmann::ordered_json::array());
}

TEST_CASE("safetensors without tensors or metadata", "[safetensors]") {
  TempDir dir;
  cr::write_safetensors(dir / "none.safetensors", {});
  cr::SafetensorsFile file(dir / "none.safetensors");
  CHECK(file.names().empty());
  CHECK(file.metadata().empty());
  CHECK_THAT(error_of([&] { file.get("x"); }), Contains("no tensor named 'x'"));
}

TEST_CASE("safetensors dtype names", "[safetensors]") {
  for (auto dtype : {cr::DType::F64, cr::DType::F32, cr::DType::F16, cr::DType::BF16,
                     cr::DType::I64, cr::DType::I32, cr::DType::I16, cr::DType::I8,
                     cr::DType::U8, cr::DType::BOOL}) {
    CHECK(cr::parse_dtype(cr::dtype_name(dtype)) == dtype);
  }
  CHECK(cr::dtype_size(cr::DType::BF16) == 2);
  CHECK(cr::dtype_size(cr::DType::F64) == 8);
  CHECK_THAT(error_of([] { cr::parse_dtype("F8_E4M3"); }), Contains("F8_E4M3"));
}

TEST_CASE("write_safetensors rejects inconsistent tensors", "[safetensors]") {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  std::vector<float> data(6);
  const auto write = [&](std::vector<cr::TensorView> tensors) {
    return error_of([&] { cr::write_safetensors(path, tensors); });
  };
  const std::string wrong_size = write({{"w", cr::DType::F32, {2, 3}, data.data(), 20}});
  CHECK_THAT(wrong_size, Contains(path) && Contains("'w'") && Contains("needs 24"));
  CHECK_THAT(write({{"w", cr::DType::F32, {-1}, data.data(), 4}}), Contains("invalid shape"));
  CHECK_THAT(write({{"w", cr::DType::F32, {1}, data.data(), 4},
                    {"w", cr::DType::F32, {1}, data.data(), 4}}),
             Contains("appears twice"));
  CHECK_THAT(write({{"__metadata__", cr::DType::F32, {1}, data.data(), 4}}),
             Contains("reserved"));
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("corrupt safetensors files are reported with the file name", "[safetensors]") {
  TempDir dir;
  const std::string path = dir / "corrupt.safetensors";
  const auto open_error = [&] { return error_of([&] { cr::SafetensorsFile file(path); }); };

  SECTION("missing file") {
    CHECK_THAT(open_error(), Contains(path) && Contains("cannot open"));
  }
  SECTION("shorter than the length prefix") {
    write_bytes(path, "abcde");
    CHECK_THAT(open_error(), Contains(path) && Contains("too short"));
  }
  SECTION("header length beyond the file size") {
    write_bytes(path, std::string("\xff\x00\x00\x00\x00\x00\x00\x00{}", 10));
    CHECK_THAT(open_error(), Contains(path) && Contains("header length 255 exceeds"));
  }
  SECTION("header length over the format's 100 MB limit, even in a file that long") {
    std::string bytes("\x01\xe1\xf5\x05\x00\x00\x00\x00", 8);  // 100,000,001
    write_bytes(path, bytes);
    fs::resize_file(path, 100'000'010);  // sparse
    CHECK_THAT(open_error(), Contains(path) && Contains("header length 100000001 is over the format's limit"));
  }
  SECTION("invalid JSON") {
    write_raw_safetensors(path, R"({"w": {"dtype": "F32",)", "");
    CHECK_THAT(open_error(), Contains(path) && Contains("not valid JSON"));
  }
  SECTION("unknown dtype") {
    write_raw_safetensors(
        path, R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", "ab");
    CHECK_THAT(open_error(), Contains(path) && Contains("'w'") && Contains("unknown dtype"));
  }
  SECTION("missing field") {
    write_raw_safetensors(path, R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd");
    CHECK_THAT(open_error(), Contains(path) && Contains("'w'") && Contains("shape"));
  }
  SECTION("data_offsets out of range (truncated data)") {
    std::vector<float> data(1024, 1.0f);
    cr::write_safetensors(path, {{"w", cr::DType::F32, {1024}, data.data(), 4096}});
    fs::resize_file(path, fs::file_size(path) - 100);
    CHECK_THAT(open_error(), Contains(path) && Contains("'w'") && Contains("out of range"));
  }
  SECTION("data_offsets inconsistent with shape and dtype") {
    write_raw_safetensors(
        path, R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})",
        std::string(12, 'x'));
    CHECK_THAT(open_error(), Contains(path) && Contains("'w'") && Contains("needs 16"));
  }
  SECTION("overlapping tensors") {
    write_raw_safetensors(path,
                          R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                              "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})",
                          std::string(6, 'x'));
    CHECK_THAT(open_error(), Contains(path) && Contains("'b'") && Contains("overlap"));
  }
  SECTION("trailing bytes after the data") {
    write_raw_safetensors(
        path, R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})", "abcdEXTRA");
    CHECK_THAT(open_error(), Contains(path) && Contains("cover 4 bytes"));
  }
  SECTION("metadata that is not strings") {
    write_raw_safetensors(path, R"({"__metadata__": {"step": 10}})", "");
    CHECK_THAT(open_error(), Contains(path) && Contains("__metadata__.step"));
  }
  SECTION("missing tensor names the closest one") {
    std::vector<float> data(2);
    cr::write_safetensors(path, {{"layer.weight", cr::DType::F32, {2}, data.data(), 8}});
    cr::SafetensorsFile file(path);
    CHECK_THAT(error_of([&] { file.get("layer.wieght"); }),
               Contains(path) && Contains("'layer.wieght'") && Contains("closest: 'layer.weight'"));
  }
}

TEST_CASE("CheckpointWriter commits a complete step directory", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  std::vector<float> weights(1000);
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i) * 0.5f;

  cr::CheckpointWriter writer(root, 10);
  writer.write_tensors("model.safetensors",
                       {{"w", cr::DType::F32, {10, 100}, weights.data(), 4000}}, {{"step", "10"}});
  writer.write_text("config.yaml", "model: tiny\n");
  write_bytes(writer.staged_path("optimizer.bin"), "opaque optimizer state");
  CHECK(fs::exists(writer.staging_dir()));
  const std::string final_dir = writer.commit({{"run", "test"}});

  CHECK(final_dir == (fs::path(root) / "step_00000010").string());
  CHECK(hidden_entries(root).empty());
  const auto manifest = nlohmann::json::parse(read_bytes(final_dir + "/manifest.json"));
  CHECK(manifest["step"] == 10);
  CHECK(manifest["run"] == "test");
  CHECK(manifest["format_version"] == 1);
  REQUIRE(manifest["files"].size() == 3);
  for (const std::string name : {"model.safetensors", "config.yaml", "optimizer.bin"}) {
    INFO(name);
    const std::string path = final_dir + "/" + name;
    REQUIRE(manifest["files"].contains(name));
    CHECK(manifest["files"][name]["bytes"] == fs::file_size(path));
    CHECK(manifest["files"][name]["crc32"] == fmt::format("{:08x}", cr::crc32_file(path)));
  }
  CHECK(cr::verify_checkpoint(final_dir) == manifest);
  cr::SafetensorsFile model(final_dir + "/model.safetensors");
  CHECK(std::memcmp(model.get("w").data, weights.data(), 4000) == 0);
  CHECK_THAT(error_of([&] { writer.commit(); }), Contains("already committed"));
}

TEST_CASE("CheckpointWriter rejects bad names and reserved manifest keys", "[checkpoint]") {
  TempDir dir;
  cr::CheckpointWriter writer(dir / "ckpt", 1);
  CHECK_THAT(error_of([&] { writer.staged_path("../escape"); }), Contains("plain file name"));
  CHECK_THAT(error_of([&] { writer.staged_path("a/b"); }), Contains("plain file name"));
  CHECK_THAT(error_of([&] { writer.staged_path("manifest.json"); }), Contains("commit()"));
  CHECK_THAT(error_of([&] { writer.commit({{"files", 1}}); }), Contains("reserved"));
  CHECK_THAT(error_of([&] { cr::CheckpointWriter(dir / "ckpt", -1); }), Contains(">= 0"));
}

TEST_CASE("an uncommitted writer leaves nothing behind", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  {
    cr::CheckpointWriter writer(root, 10);
    writer.write_text("notes.txt", "partial");
    CHECK(fs::exists(writer.staging_dir()));
  }
  CHECK(fs::is_empty(root));
  CHECK_FALSE(cr::latest_checkpoint(root));
}

TEST_CASE("verify_checkpoint catches damage and names the file", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  std::vector<float> weights(1024, 0.25f);
  cr::CheckpointWriter writer(root, 3);
  writer.write_tensors("model.safetensors", {{"w", cr::DType::F32, {1024}, weights.data(), 4096}});
  const std::string ckpt = writer.commit();
  const std::string model = ckpt + "/model.safetensors";
  const auto size = fs::file_size(model);
  const auto verify_error = [&] { return error_of([&] { cr::verify_checkpoint(ckpt); }); };

  SECTION("truncated file") {
    fs::resize_file(model, 100);
    CHECK_THAT(verify_error(),
               Contains(ckpt) && Contains(fmt::format("model.safetensors: size 100 but the "
                                                      "manifest says {} (truncated?)",
                                                      size)));
  }
  SECTION("flipped byte") {
    std::fstream file(model, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(size - 10));
    const char byte = static_cast<char>(file.get());
    file.seekp(static_cast<std::streamoff>(size - 10));
    file.put(static_cast<char>(byte ^ 0x01));
    file.close();
    CHECK_THAT(verify_error(), Contains(ckpt) && Contains("model.safetensors: crc32 mismatch "
                                                          "(corrupted)"));
  }
  SECTION("listed file missing") {
    fs::remove(model);
    CHECK_THAT(verify_error(), Contains(ckpt) && Contains("model.safetensors"));
  }
  SECTION("manifest missing") {
    fs::remove(ckpt + "/manifest.json");
    CHECK_THAT(verify_error(),
               Contains(ckpt) && Contains("manifest.json missing: the checkpoint is incomplete"));
  }
  SECTION("directory missing") {
    fs::remove_all(ckpt);
    CHECK_THAT(verify_error(), Contains(ckpt) && Contains("not found"));
  }
  SECTION("manifest not JSON") {
    write_bytes(ckpt + "/manifest.json", "{\"files\": ");
    CHECK_THAT(verify_error(), Contains(ckpt) && Contains("manifest.json: not valid JSON"));
  }
  SECTION("manifest entry pointing outside the checkpoint") {
    write_bytes(ckpt + "/manifest.json",
                R"({"files": {"../x": {"bytes": 1, "crc32": "00000000"}}})");
    CHECK_THAT(verify_error(), Contains(ckpt) && Contains("malformed entry for '../x'"));
  }
}

TEST_CASE("latest_checkpoint picks the newest complete step", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  CHECK_FALSE(cr::latest_checkpoint(root));
  commit_step(root, 5, "five");
  const std::string twenty = commit_step(root, 20, "twenty");
  commit_step(root, 7, "seven");
  fs::create_directories(fs::path(root) / "step_00000300");                // no manifest
  fs::create_directories(fs::path(root) / ".tmp-step_00000400-1");          // staging
  write_bytes(root + "/.tmp-step_00000400-1/manifest.json", "{}");
  fs::create_directories(fs::path(root) / "step_notanumber");
  write_bytes(root + "/step_notanumber/manifest.json", "{}");
  CHECK(cr::latest_checkpoint(root) == twenty);

  // Numeric, not lexicographic: steps past 8 digits still sort last.
  const std::string big = commit_step(root, 123456789, "big");
  CHECK(fs::path(big).filename() == "step_123456789");
  CHECK(cr::latest_checkpoint(root) == big);
}

TEST_CASE("committing the same step twice replaces it", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  {
    cr::CheckpointWriter writer(root, 10);
    writer.write_text("first.txt", "one");
    writer.commit();
  }
  cr::CheckpointWriter writer(root, 10);
  writer.write_text("second.txt", "two");
  const std::string ckpt = writer.commit();
  CHECK_FALSE(fs::exists(ckpt + "/first.txt"));
  CHECK(read_bytes(ckpt + "/second.txt") == "two");
  const auto manifest = cr::verify_checkpoint(ckpt);
  CHECK(manifest["files"].size() == 1);
  CHECK(manifest["files"].contains("second.txt"));
  CHECK(hidden_entries(root).empty());
}

TEST_CASE("prune_checkpoints keeps the newest N of its run", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  cr::prune_checkpoints(root, 2, "a");  // missing root: nothing to do
  for (int64_t step : {1, 2, 3, 4, 5}) commit_step(root, step, std::to_string(step));
  // Regression: another run's checkpoints in the same root were pruned in favour of this run's.
  for (int64_t step : {6, 7}) commit_step(root, step, "other run", "b");
  fs::create_directories(fs::path(root) / "step_00000000");  // incomplete: not ours to judge
  const std::string pid = std::to_string(::getpid());
  const std::string ours_stale = ".tmp-step_00000009-" + pid;
  const std::string other_process = ".tmp-step_00000009-999999999";
  fs::create_directories(fs::path(root) / ours_stale);
  fs::create_directories(fs::path(root) / other_process);
  cr::CheckpointWriter live(root, 8);

  cr::prune_checkpoints(root, 0, "a");
  CHECK(fs::exists(fs::path(root) / "step_00000001"));

  cr::prune_checkpoints(root, 2, "a");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(root)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  const std::string live_name = fs::path(live.staging_dir()).filename().string();
  std::vector<std::string> expected = {other_process,   live_name,       "step_00000000", "step_00000004",
                                       "step_00000005", "step_00000006", "step_00000007"};
  std::sort(expected.begin(), expected.end());
  CHECK(names == expected);
  CHECK(cr::checkpoint_run((fs::path(root) / "step_00000007").string()) == "b");
  CHECK(cr::checkpoint_run((fs::path(root) / "step_00000000").string()).empty());
  CHECK(cr::latest_checkpoint(root) == (fs::path(root) / "step_00000007").string());
}

TEST_CASE("a job's start removes every interrupted save but the live writer's", "[checkpoint]") {
  TempDir dir;
  const std::string root = dir / "ckpt";
  CHECK(cr::remove_interrupted_saves(root).empty());  // missing root
  commit_step(root, 1, "one");
  // Regression: a killed process's staging and retired directories stayed for ever.
  for (const char* name : {".tmp-step_00000002-999999998", ".old-step_00000001-999999999"}) {
    fs::create_directories(fs::path(root) / name / "sub");
  }
  cr::CheckpointWriter live(root, 3);
  const auto removed = cr::remove_interrupted_saves(root);
  CHECK(removed.size() == 2);
  CHECK(hidden_entries(root) == std::vector<std::string>{fs::path(live.staging_dir()).filename().string()});
  CHECK(cr::latest_checkpoint(root) == (fs::path(root) / "step_00000001").string());
}

// Tensor slices: ranks write the parts they own; a reader assembles any range from any files.
namespace {

// Writes `tensors` (name -> values, shape = {values.size()}) split over `ranks` files, rank r
// taking [r n / ranks, (r + 1) n / ranks) of every tensor, and commits the checkpoint.
std::string write_sliced(const std::string& root, const std::map<std::string, std::vector<float>>& tensors, int ranks,
                         std::map<std::string, cr::FileDigest>* digests = nullptr) {
  cr::CheckpointWriter writer(root, 1);
  std::map<std::string, cr::FileDigest> sealed;
  for (int r = 0; r < ranks; ++r) {
    std::vector<cr::TensorSlice> slices;
    for (const auto& [name, values] : tensors) {
      const int64_t n = static_cast<int64_t>(values.size());
      const int64_t begin = r * n / ranks, end = (r + 1) * n / ranks;
      if (end > begin) slices.push_back({name, {n}, begin, end - begin, 1, 0, values.data() + begin});
    }
    const std::string file = cr::slice_file_name(r, ranks);
    sealed[file] = cr::write_slice_file(fs::path(writer.staging_dir()) / file, slices);
  }
  if (digests) *digests = sealed;
  return writer.commit(nullptr, sealed);
}

std::vector<std::string> listed_files(const nlohmann::json& manifest) {
  std::vector<std::string> files;
  for (const auto& [name, entry] : manifest["files"].items()) files.push_back(name);
  return files;
}

}  // namespace

TEST_CASE("tensor slices written by 3 ranks read back in any range", "[store][slices]") {
  TempDir dir;
  std::vector<float> a(1000), b(7);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
  std::map<std::string, cr::FileDigest> digests;
  const auto checkpoint = write_sliced(dir.path.string(), {{"a", a}, {"exp_avg.b", b}}, 3, &digests);
  const auto manifest = cr::verify_checkpoint(checkpoint);  // the sealed digests are the files' own
  CHECK(listed_files(manifest) == std::vector<std::string>{"shard-00000-of-00003.safetensors",
                                                           "shard-00001-of-00003.safetensors",
                                                           "shard-00002-of-00003.safetensors"});
  // Each file holds its third: 333 or 334 elements of a, 2 or 3 of b.
  for (int r = 0; r < 3; ++r) {
    const cr::SafetensorsFile file(fs::path(checkpoint) / cr::slice_file_name(r, 3));
    size_t bytes = 0;
    for (const auto& name : file.names()) bytes += file.get(name).nbytes;
    CHECK(bytes == ((r + 1) * 1000 / 3 - r * 1000 / 3 + (r + 1) * 7 / 3 - r * 7 / 3) * sizeof(float));
  }
  cr::SliceReader reader(checkpoint, manifest, listed_files(manifest));
  CHECK(reader.shape("a") == std::vector<int64_t>{1000});
  std::vector<float> out(1000);
  reader.read("a", 0, 1000, out.data());
  CHECK(out == a);
  // A range across two files' boundary (333 | 334).
  std::vector<float> part(10);
  reader.read("a", 328, 10, part.data());
  CHECK(part == std::vector<float>(a.begin() + 328, a.begin() + 338));
  std::vector<float> whole_b(7);
  reader.read_whole("exp_avg.b", {7}, whole_b.data());
  CHECK(whole_b == b);
  CHECK_THROWS_WITH(reader.read_whole("exp_avg.b", {1, 7}, whole_b.data()),
                    Contains("'exp_avg.b' has shape [7] but the model needs [1x7]"));
  CHECK_THROWS_WITH(reader.read("c", 0, 1, out.data()), Contains("no tensor 'c'"));
  CHECK_THROWS_WITH(reader.read("a", 990, 20, out.data()), Contains("outside tensor 'a'"));
}

TEST_CASE("strided slices (column splits) and nested duplicate pieces read back in any range", "[store][slices]") {
  TempDir dir;
  // A 6 x 8 matrix: file 0 holds columns 0-4 of every row (runs of 5 at stride 8, built by
  // append_run), file 1 columns 5-7 and, again, all of row 2 (a duplicate inside coverage).
  std::vector<float> m(48);
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(i) + 0.25f;
  std::vector<float> left, right;
  std::vector<cr::TensorSlice> first, second;
  for (int row = 0; row < 6; ++row) {
    for (int col = 0; col < 8; ++col) (col < 5 ? left : right).push_back(m[row * 8 + col]);
  }
  for (int row = 0; row < 6; ++row) cr::append_run(first, "m", {6, 8}, row * 8, 5, left.data() + row * 5);
  for (int row = 0; row < 6; ++row) cr::append_run(second, "m", {6, 8}, row * 8 + 5, 3, right.data() + row * 3);
  REQUIRE(first.size() == 1);  // one strided slice of 6 runs
  CHECK(first[0].runs == 6);
  CHECK(first[0].stride == 8);
  second.push_back({"m", {6, 8}, 16, 8, 1, 0, m.data() + 16});
  cr::CheckpointWriter writer(dir.path.string(), 1);
  std::map<std::string, cr::FileDigest> sealed;
  sealed[cr::slice_file_name(0, 2)] = cr::write_slice_file(fs::path(writer.staging_dir()) / cr::slice_file_name(0, 2), first);
  sealed[cr::slice_file_name(1, 2)] = cr::write_slice_file(fs::path(writer.staging_dir()) / cr::slice_file_name(1, 2), second);
  const auto checkpoint = writer.commit(nullptr, sealed);
  const auto manifest = cr::verify_checkpoint(checkpoint);
  cr::SliceReader reader(checkpoint, manifest, listed_files(manifest));
  for (int64_t begin : {0, 3, 7, 16, 17, 20, 40}) {
    for (int64_t count : {1, 5, 8}) {
      if (begin + count > 48) continue;
      INFO("elements [" << begin << ", " << begin + count << ")");
      std::vector<float> out(count, -1.0f);
      reader.read("m", begin, count, out.data());
      CHECK(out == std::vector<float>(m.begin() + begin, m.begin() + begin + count));
    }
  }
}

TEST_CASE("a reader reads only the files it needs and names a missing or corrupted one", "[store][slices]") {
  TempDir dir;
  std::vector<float> a(100, 1.0f);
  const auto checkpoint = write_sliced(dir.path.string(), {{"a", a}}, 4);
  auto manifest = cr::verify_checkpoint(checkpoint);
  {
    cr::SliceReader reader(checkpoint, manifest, listed_files(manifest));
    std::vector<float> out(25);
    reader.read("a", 50, 25, out.data());
    CHECK(reader.files_read() == std::vector<std::string>{"shard-00002-of-00004.safetensors"});
  }
  // A rank's file left out of the index: the elements it held are reported missing.
  {
    auto files = listed_files(manifest);
    files.erase(files.begin() + 1);
    cr::SliceReader reader(checkpoint, manifest, files);
    std::vector<float> out(100);
    CHECK_THROWS_WITH(reader.read("a", 0, 100, out.data()),
                      Contains("no file holds elements [25, 100) of tensor 'a'"));
  }
  // A flipped byte in rank 3's data is found when that file is first read.
  {
    std::fstream file(fs::path(checkpoint) / "shard-00003-of-00004.safetensors",
                      std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-3, std::ios::end);
    file.put('\x7f');
  }
  CHECK_NOTHROW(cr::verify_checkpoint(checkpoint, /*check_crcs=*/false));
  cr::SliceReader reader(checkpoint, manifest, listed_files(manifest));
  std::vector<float> out(25);
  CHECK_NOTHROW(reader.read("a", 0, 25, out.data()));
  CHECK_THROWS_WITH(reader.read("a", 75, 25, out.data()),
                    Contains("shard-00003-of-00004.safetensors") && Contains("crc32 mismatch"));
}

TEST_CASE("whole-tensor files (checkpoints from before slices) read as one slice per tensor", "[store][slices]") {
  TempDir dir;
  cr::CheckpointWriter writer(dir.path.string(), 2);
  const std::vector<float> w = {1, 2, 3, 4, 5, 6};
  const std::vector<int16_t> half = {1, 2};
  writer.write_tensors("model.safetensors", {{"w", cr::DType::F32, {2, 3}, w.data(), w.size() * sizeof(float)}});
  writer.write_tensors("other.safetensors", {{"h", cr::DType::F16, {2}, half.data(), half.size() * 2}});
  const auto checkpoint = writer.commit();
  const auto manifest = cr::verify_checkpoint(checkpoint);
  cr::SliceReader reader(checkpoint, manifest, {"model.safetensors"});
  std::vector<float> out(3);
  reader.read("w", 3, 3, out.data());
  CHECK(out == std::vector<float>{4, 5, 6});
  CHECK(reader.shape("w") == std::vector<int64_t>{2, 3});
  CHECK_THROWS_WITH(cr::SliceReader(checkpoint, manifest, {"other.safetensors"}),
                    Contains("tensor 'h' is F16, training state is F32"));
}

TEST_CASE("commit refuses a sealed file that is not in the staging directory", "[store][slices]") {
  TempDir dir;
  cr::CheckpointWriter writer(dir.path.string(), 3);
  CHECK_THROWS_WITH(writer.commit(nullptr, {{"shard-00001-of-00002.safetensors", {8, 0}}}),
                    Contains("shard-00001-of-00002.safetensors was announced but is not in the staging directory"));
}
