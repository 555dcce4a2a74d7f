// Gemini's decisions as plain data: chunk sizes and layouts, the tensor state machine, static
// placement, Belady's eviction order over an access trace, the auto policy's room and margin;
// the emulated device tier's budget and the NVMe tier's file.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "memory/gemini/chunk_layout.h"
#include "memory/gemini/nvme_store.h"
#include "memory/gemini/placement_policy.h"
#include "memory/gemini/tensor_state.h"
#include "memory/gemini/tier_memory.h"
#include "memory/gemini/tier_transfers.h"

using namespace cr;
using Catch::Contains;

namespace {

std::vector<FlatEntry> entries_of(const std::vector<int64_t>& sizes) {
  std::vector<FlatEntry> entries;
  int64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    FlatEntry entry;
    entry.name = "p" + std::to_string(i);
    entry.offset = offset;
    entry.numel = sizes[i];
    entries.push_back(entry);
    offset += sizes[i];
  }
  return entries;
}

std::vector<int64_t> flat(const std::vector<BucketRange>& chunks) {
  std::vector<int64_t> bounds;
  for (const auto& chunk : chunks) {
    bounds.push_back(chunk.begin);
    bounds.push_back(chunk.end);
  }
  return bounds;
}

}  // namespace

TEST_CASE("unused elements of a packing, counted by hand") {
  // 10-element chunks: [6 | 4 unused] [5 4 | 1] [3 | 7]
  CHECK(unused_elements({6, 5, 4, 3}, 10) == 12);
  CHECK(unused_elements({6, 5, 4, 3}, 7) == 3);  // [6 | 1] [5 | 2] [4 3]
  CHECK(unused_elements({6, 5, 4, 3}, 9) == 9);  // [6|3] [5 4] [3|6]
}

TEST_CASE("the chunk size search takes the least padding, rounded up to the data ranks") {
  ChunkSearchOptions options;
  options.min_chunk_size = 1;
  options.search_interval = 1;
  options.search_range = 6;  // sizes 6..12; 7 wastes 3, every other size more
  const auto one = make_chunk_layout(entries_of({6, 5, 4, 3}), 1, options);
  CHECK(one.chunk_size == 7);
  CHECK(flat(one.chunks) == std::vector<int64_t>{0, 6, 6, 11, 11, 18});
  CHECK(one.padding == 1 + 2 + 0);
  const auto two = make_chunk_layout(entries_of({6, 5, 4, 3}), 2, options);
  CHECK(two.chunk_size == 8);
  CHECK(flat(two.chunks) == std::vector<int64_t>{0, 6, 6, 11, 11, 18});
  CHECK(two.padding == 2 + 3 + 1);
  CHECK_FALSE(two.keep_gathered);
}

TEST_CASE("a parameter far larger than the rest takes a chunk of its own, and a small model stays gathered") {
  std::vector<int64_t> sizes(5, 10);
  sizes.push_back(10000);
  sizes.insert(sizes.end(), 14, 10);
  ChunkSearchOptions options;
  options.min_chunk_size = 40;
  options.search_interval = 10;
  options.search_range = 0;
  const auto layout = make_chunk_layout(entries_of(sizes), 1, options);
  CHECK(layout.chunk_size == 40);
  CHECK(flat(layout.chunks) ==
        std::vector<int64_t>{0, 40, 40, 50, 50, 10050, 10050, 10090, 10090, 10130, 10130, 10170, 10170, 10190});
  CHECK(layout.capacity(2) == 10000);
  CHECK(layout.padding == 30 + 0 + 20);

  ChunkSearchOptions large;  // Colossal-AI's default 32 x 2^20 elements
  const auto small = make_chunk_layout(entries_of({100, 200}), 4, large);
  CHECK(small.keep_gathered);
  CHECK(small.chunks.size() == 1);
  CHECK(small.chunk_size == 300);

  ChunkSearchOptions given;
  given.chunk_size = 250;
  CHECK(flat(make_chunk_layout(entries_of({100, 100, 100}), 3, given).chunks) == std::vector<int64_t>{0, 200, 200, 300});
  CHECK(make_chunk_layout(entries_of({100, 100, 100}), 3, given).chunk_size == 252);
}

TEST_CASE("tensor states move only along Gemini's legal transitions") {
  using S = TensorState;
  const std::vector<std::pair<S, S>> legal = {{S::Free, S::Hold},          {S::Hold, S::Free},
                                              {S::Hold, S::Compute},       {S::Compute, S::Hold},
                                              {S::Compute, S::HoldAfterBwd}, {S::HoldAfterBwd, S::Compute},
                                              {S::HoldAfterBwd, S::ReadyForReduce}, {S::ReadyForReduce, S::Hold}};
  const S all[] = {S::Free, S::Hold, S::Compute, S::HoldAfterBwd, S::ReadyForReduce};
  for (S from : all) {
    for (S to : all) {
      INFO(tensor_state_name(from) << " -> " << tensor_state_name(to));
      const bool expected = std::find(legal.begin(), legal.end(), std::make_pair(from, to)) != legal.end();
      CHECK(legal_transition(from, to) == expected);
    }
  }
  ChunkTensorStates states(7, 3, S::Free);
  CHECK_THROWS_WITH(states.move(1, S::Compute),
                    Contains("chunk 7 tensor 1: FREE -> COMPUTE is not a legal Gemini state change"));
  states.move_all(S::Hold);
  states.move(0, S::Compute);
  states.move(0, S::HoldAfterBwd);
  CHECK_THROWS_WITH(states.move(0, S::Hold), Contains("HOLD_AFTER_BWD -> HOLD"));
  states.move(0, S::ReadyForReduce);
  CHECK(states.count(S::ReadyForReduce) == 1);
  CHECK(states.count(S::Hold) == 2);
  CHECK_FALSE(states.all(S::ReadyForReduce));
  CHECK_THROWS_WITH(states.move(2, S::ReadyForReduce), Contains("HOLD -> READY_FOR_REDUCE"));
}

TEST_CASE("static placement takes the first chunks for each fraction, and cuda, cpu and auto are presets") {
  const std::vector<int64_t> bytes = {10, 10, 10, 10};
  PlacementConfig config;
  config.policy = "static";
  config.shard_param_frac = 0.5;
  config.offload_optim_frac = 0.25;
  const auto placed = initial_placement(config, bytes);
  CHECK(placed[0].keep_gathered);
  CHECK(placed[1].keep_gathered);
  CHECK_FALSE(placed[2].keep_gathered);
  CHECK(placed[0].state == Tier::Host);
  CHECK(placed[1].state == Tier::Device);
  config.offload_optim_frac = 0.75;
  config.nvme_offload_fraction = 0.5;  // of the three host chunks' bytes: the first two
  const auto nvme = initial_placement(config, bytes);
  CHECK(nvme[0].state == Tier::Nvme);
  CHECK(nvme[1].state == Tier::Nvme);
  CHECK(nvme[2].state == Tier::Host);
  CHECK(nvme[3].state == Tier::Device);
  config.offload_optim_frac = 0.25;
  config.nvme_offload_fraction = 0;
  for (const auto& p : placed) CHECK(p.weights == Tier::Device);

  for (const std::string policy : {"cuda", "cpu", "auto"}) {
    INFO(policy);
    config.policy = policy;
    const Tier expected = policy == "cuda" ? Tier::Device : Tier::Host;
    for (const auto& p : initial_placement(config, bytes)) {
      CHECK(p.weights == expected);
      CHECK(p.state == expected);
      CHECK_FALSE(p.keep_gathered);
    }
  }
}

TEST_CASE("Belady's order: chunks not used again leave first, then the one used furthest ahead") {
  AccessTrace trace;
  for (const std::vector<size_t>& moment : {std::vector<size_t>{0}, {1}, {2}, {0}, {3}, {1}}) trace.record(moment);
  CHECK(trace.next_use(0, 2) == 3);
  CHECK(trace.next_use(4, 0) == AccessTrace::npos);
  CHECK(eviction_order({0, 1, 3, 4}, trace, 2) == std::vector<size_t>{4, 1, 3, 0});
  CHECK(eviction_order({0, 1}, trace, 5) == std::vector<size_t>{0, 1});  // neither used again: given order

  // The textbook reference string 1 2 3 4 1 2 5 1 2 3 4 5 with three frames: the optimal policy
  // faults 7 times (FIFO: 9, LRU: 10).
  const std::vector<size_t> references = {1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5};
  AccessTrace textbook;
  for (size_t chunk : references) textbook.record({chunk});
  std::vector<size_t> frames;
  int faults = 0;
  for (size_t t = 0; t < references.size(); ++t) {
    if (std::find(frames.begin(), frames.end(), references[t]) != frames.end()) continue;
    ++faults;
    if (frames.size() == 3) {
      const size_t victim = eviction_order(frames, textbook, t)[0];
      frames.erase(std::find(frames.begin(), frames.end(), victim));
    }
    frames.push_back(references[t]);
  }
  CHECK(faults == 7);
}

TEST_CASE("auto's room for model data and the margin's chunks") {
  PlacementConfig config;
  config.policy = "auto";
  config.warmup_non_model_data_ratio = 0.8;
  config.steady_cuda_cap_ratio = 0.9;
  CHECK(model_data_room(config, 1000, true, 0) == 200);
  CHECK(model_data_room(config, 1000, false, 300) == 600);
  config.gpu_margin_mem_ratio = 0.5;
  CHECK(margin_chunks(config, 100, {20, 20, 20, 20}) == std::vector<size_t>{0, 1});  // 50 of the margin
  CHECK(margin_chunks(config, 100, {60, 10}).empty());  // in order: the first does not fit
  CHECK(margin_chunks(config, -5, {1}).empty());
}

TEST_CASE("the emulated device tier counts a buffer until its last view dies and refuses beyond its budget") {
  TierMemory memory(torch::kCPU, 1000);
  CHECK(memory.emulated());
  auto first = memory.zeros(Tier::Device, 100, torch::kFloat, "first");
  auto view = first.narrow(0, 10, 20);
  CHECK(memory.device_bytes() == 400);
  CHECK_THROWS_WITH(memory.empty(Tier::Device, 200, torch::kFloat, "chunk 3 weights"),
                    Contains("device memory budget 1000 B cannot take 800 B for chunk 3 weights: 400 B already in use"));
  first = torch::Tensor();
  CHECK(memory.device_bytes() == 400);  // the view keeps it
  view = torch::Tensor();
  CHECK(memory.device_bytes() == 0);
  auto host = memory.empty(Tier::Host, 1000, torch::kFloat, "host");  // the host tier has no budget
  CHECK(memory.host_bytes() == 4000);
  CHECK(memory.device_peak() == 400);
  auto half = memory.empty(Tier::Device, 100, torch::kBFloat16, "bf16");
  CHECK(memory.device_bytes() == 200);
  CHECK(half.scalar_type() == torch::kBFloat16);
}

namespace {

// The NVMe tier's file, found through this process's descriptors (it has no name any more).
std::string open_store_file() {
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const auto target = std::filesystem::read_symlink(fd.path(), error).string();
    if (target.find("colossal-run-gemini-") != std::string::npos) return fd.path().string();
  }
  return "";
}

}  // namespace

TEST_CASE("the NVMe tier's file is gone from its directory at once, and reads back what was written or says why") {
  const auto dir = std::filesystem::temp_directory_path() / ("cr-test-nvme-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  {
    NvmeStore store(dir.string(), 3);
    CHECK(std::filesystem::is_empty(dir));  // unlinked while open
    const size_t small = store.add_region(10, "small");
    const size_t large = store.add_region(20 << 20, "large");  // several pieces in flight
    CHECK(store.region_bytes(small) == kNvmeBlock);
    CHECK(store.file_bytes() == kNvmeBlock + (20 << 20));
    TierMemory memory(torch::kCPU, 0);
    auto written = memory.empty(Tier::Host, (20 << 20) / 4, torch::kFloat, "written");
    auto read = memory.empty(Tier::Host, (20 << 20) / 4, torch::kFloat, "read");
    written.copy_(torch::arange(written.numel(), torch::kFloat));
    const auto first = store.write(large, written.data_ptr());
    const auto second = store.write(small, written.data_ptr());
    store.wait(first);
    store.wait(second);
    store.wait(store.read(large, read.data_ptr()));
    CHECK(torch::equal(read, written));
    CHECK(store.bytes_written() == kNvmeBlock + (20 << 20));
    CHECK_THROWS_WITH(store.read(store.add_region(8, "fresh"), read.data_ptr()), Contains("fresh) read before"));

    // A drive that returns other bytes than it was given is caught by the region's CRC.
    const std::string file = open_store_file();
    REQUIRE_FALSE(file.empty());
    const int fd = ::open(file.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    const char garbage[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    REQUIRE(::pwrite(fd, garbage, sizeof garbage, kNvmeBlock + 100) == sizeof garbage);
    ::close(fd);
    CHECK_THROWS_WITH(store.wait(store.read(large, read.data_ptr())), Contains("large came back with CRC-32"));
  }
  CHECK(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
  CHECK_THROWS_WITH(NvmeStore("/nonexistent/nvme", 0), Contains("zero.nvme_path /nonexistent/nvme: not a directory"));
}

TEST_CASE("transfers started ahead land in order, accumulations add after their copy, errors reach the waiter, and "
          "the hidden share is what was not waited") {
  TierTransfers transfers;
  std::vector<torch::Tensor> sources, targets;
  std::vector<TierTransfers::Ticket> tickets;
  for (int i = 0; i < 4; ++i) {
    sources.push_back(torch::arange(1 << 18, torch::kFloat).add_(i));
    targets.push_back(torch::zeros({1 << 18}));
    tickets.push_back(transfers.start(targets.back(), sources.back()));
  }
  CHECK(tickets == std::vector<TierTransfers::Ticket>{1, 2, 3, 4});
  transfers.wait(tickets[1]);
  CHECK(torch::equal(targets[0], sources[0]));  // queued before the one waited for
  CHECK(torch::equal(targets[1], sources[1]));
  transfers.wait_all();
  CHECK(torch::equal(targets[3], sources[3]));
  CHECK(transfers.times().seconds > 0);

  // A copy on the caller is all exposed.
  transfers.reset_times();
  const auto copied = transfers.copied_to(sources[2], torch::kCPU);
  CHECK(torch::equal(copied, sources[2]));
  CHECK(copied.data_ptr() != sources[2].data_ptr());  // a real copy, as between tiers
  CHECK(transfers.times().seconds > 0);
  CHECK(transfers.times().exposed == transfers.times().seconds);
  CHECK(transfers.times().hidden_share() == 0.0);

  // An accumulation adds after its copy, in queue order.
  auto sum = torch::ones({1 << 18});
  transfers.start_accumulate(sum, sources[0]);
  const auto twice = transfers.start_accumulate(sum, sources[1]);
  transfers.wait(twice);
  CHECK(torch::equal(sum, torch::ones({1 << 18}) + sources[0] + sources[1]));

  // A copy that fails on the worker fails its waiter, and the queue goes on.
  const auto bad = transfers.start(torch::zeros({3}), torch::zeros({4}));
  const auto good = transfers.start(targets[0], sources[3]);
  CHECK_THROWS(transfers.wait(bad));
  transfers.wait(good);
  CHECK(torch::equal(targets[0], sources[3]));

  CHECK(TransferTimes{2.0, 0.5}.hidden_share() == 0.75);
  CHECK(TransferTimes{1.0, 1.5}.hidden_share() == 0.0);  // waiting includes the hand-over
  CHECK(TransferTimes{}.hidden_share() == 0.0);
}
