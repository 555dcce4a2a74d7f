// Schedules as data: the instruction lists a rank executes for one step.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include <fmt/format.h>

#include "core/base/error.h"
#include "core/train/pipeline_schedule.h"
#include "core/train/pipeline_stage.h"
#include "core/train/schedule.h"
#include "core/train/schedule_timeline.h"
#include "core/train/stage_partition.h"

using namespace cr;

TEST_CASE("no pipeline: each micro-batch is loaded, run forward and backward, then reduce and step", "[schedule]") {
  CHECK(describe(no_pipeline_schedule(1)) == "load 0, forward 0, backward 0, reduce, step");
  const auto program = no_pipeline_schedule(3);
  CHECK(describe(program) ==
        "load 0, forward 0, backward 0, load 1, forward 1, backward 1, load 2, forward 2, backward 2, reduce, step");
  // Every micro-batch appears exactly once in each role, in order.
  for (const Op op : {Op::LoadMicroBatch, Op::Forward, Op::Backward}) {
    int64_t next = 0;
    for (const auto& instruction : program) {
      if (instruction.op == op) CHECK(instruction.micro_batch == next++);
    }
    CHECK(next == 3);
  }
  // The step's reduction waits for the last backward.
  CHECK(reducing_backward(program) == 8);
  CHECK(program[reducing_backward(program)] == Instruction{Op::Backward, 2});
}

TEST_CASE("schedules refuse impossible inputs with a message", "[schedule]") {
  CHECK_THROWS_WITH(no_pipeline_schedule(0), Catch::Contains("at least one micro-batch"));
  const std::vector<Instruction> no_backward = {{Op::LoadMicroBatch, 0}, {Op::Forward, 0}, {Op::ReduceGradients}};
  CHECK_THROWS_WITH(reducing_backward(no_backward),
                    Catch::Contains("no backward before its gradient reduction") &&
                        Catch::Contains("load 0, forward 0, reduce"));
}

// ---- Pipeline schedules ----


namespace {

using Kind = PipelineScheduleKind;

std::vector<std::vector<Instruction>> all_stages(Kind kind, int64_t P, int64_t M, int64_t V = 1) {
  std::vector<std::vector<Instruction>> programs;
  for (int64_t s = 0; s < P; ++s) programs.push_back(pipeline_schedule(kind, {P, s, M, V}));
  return programs;
}

// Forwards before the first backward (of either kind).
int64_t forwards_before_backward(const std::vector<Instruction>& program) {
  int64_t count = 0;
  for (const auto& in : program) {
    if (in.op == Op::Backward || in.op == Op::BackwardInput) break;
    count += in.op == Op::Forward;
  }
  return count;
}

}  // namespace

TEST_CASE("GPipe and 1F1B on two stages, written out", "[schedule][pipeline]") {
  CHECK(describe(pipeline_schedule(Kind::GPipe, {2, 0, 2})) ==
        "load 0, forward 0, send-activation 0, load 1, forward 1, send-activation 1, recv-gradient 0, backward 0, "
        "recv-gradient 1, backward 1, reduce, step");
  CHECK(describe(pipeline_schedule(Kind::OneFOneB, {2, 0, 3})) ==
        "load 0, forward 0, send-activation 0, load 1, forward 1, send-activation 1, recv-gradient 0, backward 0, "
        "load 2, forward 2, send-activation 2, recv-gradient 1, backward 1, recv-gradient 2, backward 2, reduce, step");
  CHECK(describe(pipeline_schedule(Kind::OneFOneB, {2, 1, 3})) ==
        "load 0, recv-activation 0, forward 0, backward 0, send-gradient 0, load 1, recv-activation 1, forward 1, "
        "backward 1, send-gradient 1, load 2, recv-activation 2, forward 2, backward 2, send-gradient 2, reduce, step");
  // One stage is gradient accumulation.
  CHECK(describe(pipeline_schedule(Kind::OneFOneB, {1, 0, 2})) == describe(no_pipeline_schedule(2)));
}

TEST_CASE("warm-up lengths are Megatron's", "[schedule][pipeline]") {
  for (int64_t P : {2, 4, 8}) {
    for (int64_t M : {1, 2, 4, 8, 16}) {
      for (int64_t s = 0; s < P; ++s) {
        INFO("P " << P << " M " << M << " stage " << s);
        const int64_t one_f_one_b = std::min(P - s - 1, M);
        CHECK(warmup_forwards(Kind::OneFOneB, {P, s, M}) == one_f_one_b);
        CHECK(warmup_forwards(Kind::GPipe, {P, s, M}) == M);
        // The first backward comes after the warm-up and one more forward, if there is one.
        CHECK(forwards_before_backward(pipeline_schedule(Kind::OneFOneB, {P, s, M})) == std::min(one_f_one_b + 1, M));
        CHECK(forwards_before_backward(pipeline_schedule(Kind::ZeroBubble, {P, s, M})) ==
              std::min(one_f_one_b + 1, M));
        if (M % P != 0) continue;
        for (int64_t V : {2, 3}) {
          const int64_t interleaved = M == P ? M * V : std::min(2 * (P - s - 1) + (V - 1) * P, M * V);
          CHECK(warmup_forwards(Kind::Interleaved, {P, s, M, V}) == interleaved);
          CHECK(forwards_before_backward(pipeline_schedule(Kind::Interleaved, {P, s, M, V})) ==
                std::min(interleaved + 1, M * V));
        }
      }
    }
  }
}

TEST_CASE("every stage runs each micro-batch's forward and backward once per chunk, in a valid order",
          "[schedule][pipeline]") {
  for (const Kind kind : {Kind::GPipe, Kind::OneFOneB, Kind::Interleaved, Kind::ZeroBubble}) {
    const int64_t P = 4, M = 8, V = kind == Kind::Interleaved ? 2 : 1;
    for (int64_t s = 0; s < P; ++s) {
      INFO(pipeline_schedule_name(kind) << " stage " << s);
      const auto program = pipeline_schedule(kind, {P, s, M, V});
      const Op backward = kind == Kind::ZeroBubble ? Op::BackwardInput : Op::Backward;
      for (int64_t c = 0; c < V; ++c) {
        std::vector<int64_t> forwards, backwards, weights;
        std::vector<size_t> forward_at(M), backward_at(M);
        for (size_t i = 0; i < program.size(); ++i) {
          const auto& in = program[i];
          if (in.chunk != c) continue;
          if (in.op == Op::Forward) forward_at[in.micro_batch] = i, forwards.push_back(in.micro_batch);
          if (in.op == backward) backward_at[in.micro_batch] = i, backwards.push_back(in.micro_batch);
          if (in.op == Op::BackwardWeight) weights.push_back(in.micro_batch);
        }
        std::vector<int64_t> expected(M);
        for (int64_t m = 0; m < M; ++m) expected[m] = m;
        CHECK(forwards == expected);
        CHECK(backwards == expected);
        if (kind == Kind::ZeroBubble) CHECK(weights == expected);
        for (int64_t m = 0; m < M; ++m) CHECK(forward_at[m] < backward_at[m]);
      }
      // The step ends with the reduction after the last backward, then the optimizer.
      CHECK(program[program.size() - 2] == Instruction{Op::ReduceGradients});
      CHECK(program.back() == Instruction{Op::OptimizerStep});
      CHECK(program[reducing_backward(program)].op == (kind == Kind::ZeroBubble ? Op::BackwardWeight : Op::Backward));
    }
  }
}

TEST_CASE("sends and receives pair up: the first and last stages load, the others receive", "[schedule][pipeline]") {
  const int64_t P = 4, M = 4;
  for (const Kind kind : {Kind::GPipe, Kind::OneFOneB, Kind::Interleaved, Kind::ZeroBubble}) {
    const int64_t V = kind == Kind::Interleaved ? 2 : 1;
    INFO(pipeline_schedule_name(kind));
    const auto programs = all_stages(kind, P, M, V);
    for (int64_t s = 0; s < P; ++s) {
      const auto& program = programs[s];
      // Activations go from virtual stage v to v + 1: stage s to s + 1, and the last stage's chunk c to the
      // first stage's chunk c + 1.
      for (int64_t c = 0; c < V; ++c) {
        const int64_t v = c * P + s;
        const bool first = v == 0, last = v == P * V - 1;
        int64_t loads = 0, recv_acts = 0, send_acts = 0, recv_grads = 0, send_grads = 0;
        for (const auto& in : program) {
          if (in.chunk != c) continue;
          loads += in.op == Op::LoadMicroBatch;
          recv_acts += in.op == Op::RecvActivation;
          send_acts += in.op == Op::SendActivation;
          recv_grads += in.op == Op::RecvGradient;
          send_grads += in.op == Op::SendGradient;
        }
        CHECK(loads == (first || last ? M : 0));
        CHECK(recv_acts == (first ? 0 : M));
        CHECK(send_acts == (last ? 0 : M));
        CHECK(recv_grads == (last ? 0 : M));
        CHECK(send_grads == (first ? 0 : M));
      }
    }
    // The simulator checks that every receive is matched by exactly one send and that nothing waits for ever.
    CHECK_NOTHROW(simulate_pipeline(programs, V));
  }
}

TEST_CASE("a schedule that would wait for ever is caught", "[schedule][pipeline]") {
  // Stage 1 receives gradients that stage 0 never sends.
  auto programs = all_stages(Kind::OneFOneB, 2, 2);
  programs[0] = {{Op::LoadMicroBatch, 0}, {Op::RecvGradient, 0}, {Op::ReduceGradients}, {Op::OptimizerStep}};
  CHECK_THROWS_WITH(simulate_pipeline(programs, 1), Catch::Contains("stage 0 waits for ever at recv-gradient 0.0"));
  programs = all_stages(Kind::OneFOneB, 2, 2);
  programs[1].erase(programs[1].begin() + 1);  // stage 1 never receives micro-batch 0's activation
  CHECK_THROWS_WITH(simulate_pipeline(programs, 1), Catch::Contains("sent but never received"));
}

TEST_CASE("bubbles match each schedule's formula", "[schedule][pipeline]") {
  for (int64_t P : {2, 4, 8}) {
    for (int64_t M : {4, 8, 16, 32}) {
      INFO("P " << P << " M " << M);
      // Forward 1, backward 2: idle / compute = (P - 1) / M, i.e. (P - 1) / (M + P - 1) of the step.
      const double pipe = static_cast<double>(P - 1) / static_cast<double>(M);
      CHECK(simulate_pipeline(all_stages(Kind::GPipe, P, M), 1).bubble_ratio() == Approx(pipe));
      const auto one_f_one_b = simulate_pipeline(all_stages(Kind::OneFOneB, P, M), 1);
      CHECK(one_f_one_b.bubble_ratio() == Approx(pipe));
      // Zero-bubble with backward split into equal input and weight parts: a third of 1F1B's bubble once there
      // are at least as many micro-batches as stages (the paper's (P - 1)(F + B - W) against (P - 1)(F + B + W)).
      const auto zero_bubble = simulate_pipeline(all_stages(Kind::ZeroBubble, P, M), 1);
      if (M >= P) {
        CHECK(zero_bubble.bubble_ratio() == Approx(pipe / 3.0));
      } else {
        CHECK(zero_bubble.bubble_ratio() < pipe);
      }
      if (M % P != 0) continue;
      for (int64_t V : {2, 4}) {
        // A chunk does 1/V of the stage's work: the bubble shrinks V-fold, (P - 1) / (V M).
        ComputeCosts costs;
        costs.forward = 1.0 / static_cast<double>(V);
        costs.backward = 2.0 / static_cast<double>(V);
        const auto interleaved = simulate_pipeline(all_stages(Kind::Interleaved, P, M, V), V, costs);
        CHECK(interleaved.bubble_ratio() == Approx(pipe / static_cast<double>(V)));
      }
    }
  }
}

TEST_CASE("activations held at once: GPipe M, 1F1B and zero-bubble P - stage, at most P deferred weight gradients",
          "[schedule][pipeline]") {
  const int64_t P = 4, M = 8;
  const auto gpipe = simulate_pipeline(all_stages(Kind::GPipe, P, M), 1);
  const auto one_f_one_b = simulate_pipeline(all_stages(Kind::OneFOneB, P, M), 1);
  const auto zero_bubble = simulate_pipeline(all_stages(Kind::ZeroBubble, P, M), 1);
  for (int64_t s = 0; s < P; ++s) {
    INFO("stage " << s);
    CHECK(gpipe.stages[s].peak_in_flight == M);
    CHECK(one_f_one_b.stages[s].peak_in_flight == P - s);
    CHECK(zero_bubble.stages[s].peak_in_flight == P - s);
    CHECK(zero_bubble.stages[s].peak_pending_weights <= P);
  }
}

TEST_CASE("pipeline layouts a schedule cannot run are refused with the reason", "[schedule][pipeline]") {
  CHECK_THROWS_WITH(pipeline_schedule(Kind::Interleaved, {4, 0, 6, 2}),
                    "the interleaved schedule needs micro-batches (6) to be a multiple of the pipeline stages (4)");
  CHECK_THROWS_WITH(pipeline_schedule(Kind::Interleaved, {4, 0, 8, 1}),
                    "the interleaved schedule needs at least 2 model chunks per stage, got 1");
  CHECK_THROWS_WITH(pipeline_schedule(Kind::OneFOneB, {4, 0, 8, 2}), "1f1b runs one model chunk per stage, got 2");
  CHECK_THROWS_WITH(pipeline_schedule(Kind::GPipe, {4, 4, 8}), "pipeline stage 4 of 4: out of range");
  CHECK_THROWS_WITH(pipeline_schedule(Kind::GPipe, {4, 0, 0}), "a pipeline step needs at least one micro-batch, got 0");
  CHECK_THROWS_WITH(parse_pipeline_schedule("pipedream"),
                    "unknown pipeline schedule 'pipedream' (gpipe, 1f1b, interleaved or zero_bubble)");
  CHECK(parse_pipeline_schedule("zero_bubble") == Kind::ZeroBubble);
}

namespace {

constexpr const char* kSchedulesIntro = R"(# Pipeline schedules

<!-- Generated by tests/test_schedule.cpp from the schedule generators; do not edit. Regenerate with
CR_UPDATE_DOCS=1 build/tests/test_schedule "docs/pipeline-schedules.md*". -->

What each pipeline schedule does in one step of P = 4 stages and M = 8 micro-batches, drawn from
the instruction lists `pipeline_schedule()` generates and run on a model clock by
`simulate_pipeline()`: a forward takes one unit, a backward two (zero-bubble: a backward-input
and a weight part of one each), messages arrive when sent. One row per stage, one two-character
cell per unit: `F3` forward of micro-batch 3, `B3` backward, `b3` / `w3` zero-bubble's
backward-input / weight part, lower-case `f3` / `x3` the forward / backward of an interleaved
stage's second model chunk, `..` idle.

The bubble is idle time over compute time, summed over stages. Peak activations count the
micro-batches (interleaved: micro-batch chunks, each 1/V of the stage) whose activations a stage
holds at once, from forward to the backward that gives the input's gradient; zero-bubble also
keeps the layer inputs of the deferred weight parts.

Choosing: M >= 4 P keeps 1F1B's bubble (idle over compute) under 25%; 1F1B holds P - stage micro-batches where GPipe
holds M, at the same bubble, so GPipe is only for comparison. Interleaving divides the bubble by
V at V times the messages and about (1 + (P - 1) / (V P)) of 1F1B's first-stage activations; it
needs M to be a multiple of P. Zero-bubble needs a backward split into its input and weight parts
and keeps up to P deferred weight parts' inputs.
)";

std::string schedules_markdown() {
  const int64_t P = 4, M = 8;
  std::string out = kSchedulesIntro;
  for (const Kind kind : {Kind::GPipe, Kind::OneFOneB, Kind::Interleaved, Kind::ZeroBubble}) {
    const int64_t V = kind == Kind::Interleaved ? 2 : 1;
    const auto timeline = simulate_pipeline(all_stages(kind, P, M, V), V);
    const double formula = (kind == Kind::ZeroBubble ? 1.0 / 3.0 : 1.0) * static_cast<double>(P - 1) /
                           static_cast<double>(V * M);
    out += fmt::format("\n## {}{}\n\nBubble {:.3f} (formula {:.3f}); peak activations per stage:", pipeline_schedule_name(kind),
                       V > 1 ? fmt::format(" (V = {})", V) : "", timeline.bubble_ratio(), formula);
    for (const auto& stage : timeline.stages) out += fmt::format(" {}", stage.peak_in_flight);
    if (kind == Kind::ZeroBubble) {
      out += "; deferred weight parts at most:";
      for (const auto& stage : timeline.stages) out += fmt::format(" {}", stage.peak_pending_weights);
    }
    out += ".\n\n```\n" + render_timeline(timeline) + "```\n";
  }
  return out;
}

}  // namespace

TEST_CASE("docs/pipeline-schedules.md is generated from the schedules", "[schedule][pipeline]") {
  const std::string markdown = schedules_markdown();
  CHECK_THAT(markdown, Catch::Contains("stage 3 |......F0B0B0F1B1B1"));
  const std::filesystem::path path = std::filesystem::path(CR_SOURCE_DIR) / "docs" / "pipeline-schedules.md";
  const char* update = std::getenv("CR_UPDATE_DOCS");
  if (update != nullptr && std::string(update) == "1") std::ofstream(path, std::ios::binary) << markdown;
  std::ifstream in(path, std::ios::binary);
  const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (written != markdown) FAIL("docs/pipeline-schedules.md is out of date; run with CR_UPDATE_DOCS=1");
}

TEST_CASE("pipeline stages get contiguous blocks balanced by cost, the LM head counted on the last", "[schedule][pipeline]") {
  CHECK(balanced_stage_blocks(12, 4, 0.0, 0.0) == std::vector<int64_t>{3, 3, 3, 3});
  CHECK(balanced_stage_blocks(10, 4, 0.0, 0.0) == std::vector<int64_t>{2, 2, 3, 3});
  // GPT-2's head costs about 4.5 blocks: the last stage keeps one block, the others share the rest.
  CHECK(balanced_stage_blocks(12, 4, 0.0, 4.46) == std::vector<int64_t>{3, 4, 4, 1});
  CHECK(balanced_stage_blocks(12, 4, 1.0, 2.0) == std::vector<int64_t>{3, 3, 4, 2});  // costs 4, 3, 4, 4
  CHECK(balanced_stage_blocks(4, 4, 0.0, 10.0) == std::vector<int64_t>{1, 1, 1, 1});
  CHECK(balanced_stage_blocks(7, 1, 0.5, 3.0) == std::vector<int64_t>{7});
  CHECK_THROWS_WITH(balanced_stage_blocks(3, 4, 0.0, 0.0),
                    "3 transformer blocks cannot fill 4 pipeline stages (each stage needs one)");
  for (int64_t blocks : {4, 7, 13, 48}) {
    for (int64_t stages : {2, 3, 4}) {
      const auto counts = balanced_stage_blocks(blocks, stages, 0.3, 2.7);
      int64_t total = 0;
      for (const int64_t c : counts) {
        CHECK(c >= 1);
        total += c;
      }
      CHECK(total == blocks);
    }
  }
}

TEST_CASE("each stage's chunks: its runs of blocks, which embeds and heads, and the stages it talks to",
          "[schedule][pipeline]") {
  // Two stages, two chunks: virtual stages 0..3 hold blocks [0,1) [1,3) [3,4) [4,6).
  const std::vector<int64_t> blocks = {1, 2, 1, 2};
  const auto first = stage_chunks(blocks, 2, 0);
  REQUIRE(first.size() == 2);
  CHECK((first[0].first_block == 0 && first[0].last_block == 1 && first[0].embeds && !first[0].heads));
  CHECK((first[0].previous == -1 && first[0].next == 1 && first[0].position == 0));
  // Chunk 1 of stage 0 follows the last stage's chunk 0: the activations wrap around.
  CHECK((first[1].first_block == 3 && first[1].last_block == 4 && first[1].previous == 1 && first[1].next == 1));
  const auto last = stage_chunks(blocks, 2, 1);
  CHECK((last[0].first_block == 1 && last[0].last_block == 3 && last[0].previous == 0 && last[0].next == 0));
  CHECK((last[1].first_block == 4 && last[1].last_block == 6 && last[1].heads && last[1].next == -1));
  CHECK(last[1].position == 3);

  // Without a pipeline one chunk does everything.
  const StageLayout whole = stage_layout({12}, 1, 0);
  REQUIRE(whole.chunks.size() == 1);
  CHECK((whole.chunks[0].embeds && whole.chunks[0].heads && whole.chunks[0].last_block == 12));
  CHECK((whole.stages == 1 && whole.virtual_stages == 1));

  CHECK_THROWS_WITH(stage_chunks({2, 2, 2}, 2, 0), Catch::Contains("cannot hold 3 virtual stages"));
  CHECK_THROWS_WITH(stage_chunks({2, 0}, 2, 1), Catch::Contains("virtual pipeline stage 1 has no block"));
}

TEST_CASE("pipeline message tags tell every message of a step apart", "[schedule][pipeline]") {
  // 4 stages x 2 chunks, 64 micro-batches: activations and gradients over each of 7 boundaries.
  std::set<int> tags;
  for (int64_t m = 0; m < 64; ++m) {
    for (int64_t from = 0; from < 7; ++from) {
      for (const bool gradient : {false, true}) {
        const int tag = pipeline_tag(m, from, 8, gradient);
        CHECK((tag >= 0 && tag < 32760));
        tags.insert(tag);
      }
    }
  }
  CHECK(tags.size() == 64u * 7u * 2u);
}

TEST_CASE("device messages: one communicator per ring edge lets every schedule finish, one for all does not",
          "[schedule][pipeline]") {
  for (const auto kind : {Kind::GPipe, Kind::OneFOneB, Kind::ZeroBubble, Kind::Interleaved}) {
    for (int64_t P : {2, 3, 4, 5, 8}) {
      for (int64_t M : {1, 2, 4, 8, 10, 16}) {
        for (int64_t V : {1, 2, 3}) {
          if ((kind == Kind::Interleaved) != (V > 1) || (kind == Kind::Interleaved && M % P != 0)) continue;
          INFO(pipeline_schedule_name(kind) << " P " << P << " M " << M << " V " << V);
          CHECK_NOTHROW(check_device_messages(all_stages(kind, P, M, V), /*per_link=*/true));
        }
      }
    }
  }
  // On one NCCL communicator, 1F1B's stage 0 queues micro-batch 1's activation while stage 1 queues
  // micro-batch 0's gradient, each ahead of the receive the other waits for.
  CHECK_THROWS_WITH(check_device_messages(all_stages(Kind::OneFOneB, 2, 2), /*per_link=*/false),
                    Catch::Contains("stage 0 sending activation 1 of virtual stage 0; "
                                    "stage 1 sending gradient 0 of virtual stage 1"));
  CHECK_THROWS_WITH(check_device_messages(all_stages(Kind::Interleaved, 2, 2, 2), /*per_link=*/false),
                    Catch::Contains("wait on each other for ever"));
  CHECK_NOTHROW(check_device_messages(all_stages(Kind::GPipe, 4, 8), /*per_link=*/false));
  // A link's sends in another order than its receives (NCCL has no tags to sort them) are caught.
  auto programs = all_stages(Kind::GPipe, 2, 2);
  auto& first = programs[0];
  const auto send = [&](int64_t m) {
    return std::find_if(first.begin(), first.end(),
                        [&](const Instruction& in) { return in.op == Op::SendActivation && in.micro_batch == m; });
  };
  std::iter_swap(send(0), send(1));
  CHECK_THROWS_WITH(check_device_messages(programs, /*per_link=*/true),
                    Catch::Contains("stage 0 sending activation 1"));
}
