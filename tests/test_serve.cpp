// Serving as data: the paged KV cache's blocks and continuous batching (hand-checked block
// tables, slots, sharing, copies and scheduling decisions), OpenAI request parsing, chat
// templates and the text a stream sends.
#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

#include "core/base/error.h"
#include "core/serve/batch_scheduler.h"
#include "core/serve/chat_template.h"
#include "core/serve/completion_text.h"
#include "core/serve/kv_block_manager.h"
#include "core/serve/openai_api.h"
#include "core/text/tokenizer.h"

using Catch::Matchers::Contains;
using cr::BatchScheduler;
using cr::BlockCopy;
using cr::KvBlockManager;
using cr::RequestState;
using cr::TokenSlot;

namespace {

std::vector<int64_t> counting(int64_t n, int64_t first = 0) {
  std::vector<int64_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

// The scheduled work of one iteration as (request, first position, positions, samples).
struct Work {
  int64_t request, first, count;
  bool samples;
  bool operator==(const Work& o) const {
    return request == o.request && first == o.first && count == o.count && samples == o.samples;
  }
};

std::vector<Work> work_of(const cr::Iteration& iteration) {
  std::vector<Work> out;
  for (const auto& s : iteration.sequences) {
    out.push_back({s.request, s.reservation.first_position, static_cast<int64_t>(s.tokens.size()), s.samples});
  }
  return out;
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<Work> {
  static std::string convert(const Work& w) {
    return "{" + std::to_string(w.request) + " @" + std::to_string(w.first) + " x" + std::to_string(w.count) +
           (w.samples ? " samples}" : "}");
  }
};
template <>
struct StringMaker<TokenSlot> {
  static std::string convert(const TokenSlot& s) {
    return "(" + std::to_string(s.block) + "," + std::to_string(s.offset) + ")";
  }
};
}  // namespace Catch

TEST_CASE("blocks are taken in order, slots follow positions, and freeing returns them") {
  KvBlockManager blocks(8, 4);
  CHECK(blocks.add_sequence(1, counting(10)) == 0);
  CHECK(blocks.blocks_to_reserve(1, 10) == 3);
  const auto reservation = blocks.reserve(1, 10);
  REQUIRE(reservation);
  CHECK(reservation->first_position == 0);
  CHECK(reservation->slots == std::vector<TokenSlot>{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 1}, {1, 2}, {1, 3},
                                                    {2, 0}, {2, 1}});
  CHECK(reservation->copies.empty());
  CHECK(blocks.block_table(1) == std::vector<cr::BlockId>{0, 1, 2});
  CHECK(blocks.free_blocks() == 5);
  CHECK(blocks.fragmentation() == Approx(2.0 / 12.0));  // block 2 holds 2 of 4 slots

  blocks.append_tokens(1, {77});
  CHECK(blocks.blocks_to_reserve(1, 1) == 0);
  CHECK(blocks.reserve(1, 1)->slots == std::vector<TokenSlot>{{2, 2}});
  CHECK(blocks.computed_tokens(1) == 11);
  // Only known tokens get slots.
  CHECK_THROWS_WITH(blocks.reserve(1, 1), Contains("reserves 1 positions after 11 of 11 tokens"));
  blocks.free(1);
  CHECK(blocks.free_blocks() == 8);
  CHECK_FALSE(blocks.has_sequence(1));
  CHECK(blocks.fragmentation() == 0.0);
}

TEST_CASE("a pool too short for a reservation refuses it and changes nothing") {
  KvBlockManager blocks(2, 4);
  blocks.add_sequence(1, counting(10));
  CHECK(blocks.blocks_to_reserve(1, 10) == 3);
  CHECK_FALSE(blocks.reserve(1, 10));
  CHECK(blocks.computed_tokens(1) == 0);
  CHECK(blocks.free_blocks() == 2);
  CHECK(blocks.reserve(1, 8));
  CHECK(blocks.free_blocks() == 0);
}

TEST_CASE("sequences with the same prefix share its full blocks, and only while one holds them") {
  KvBlockManager blocks(8, 4);
  blocks.add_sequence(1, counting(10));
  blocks.reserve(1, 10);  // blocks 0 and 1 are full: [0..3], [4..7]

  std::vector<int64_t> same_two_blocks = counting(8);
  same_two_blocks.push_back(100);
  CHECK(blocks.add_sequence(2, same_two_blocks) == 8);
  CHECK(blocks.block_table(2) == std::vector<cr::BlockId>{0, 1});
  CHECK(blocks.ref_count(0) == 2);
  CHECK(blocks.reserve(2, 1)->slots == std::vector<TokenSlot>{{3, 0}});

  std::vector<int64_t> one_block = counting(4);
  one_block.push_back(99);
  one_block.push_back(98);
  CHECK(blocks.add_sequence(3, one_block) == 4);  // [0..3] matches, [99, 98] does not
  // The same tokens after another first block are another prefix.
  std::vector<int64_t> other_start = counting(8);
  other_start[0] = 50;
  CHECK(blocks.add_sequence(4, other_start) == 0);
  // A prompt of exactly two full blocks shares one: its last token must be computed for logits.
  CHECK(blocks.add_sequence(5, counting(8)) == 4);

  for (cr::SequenceId s : {1, 2, 3, 4, 5}) blocks.free(s);
  CHECK(blocks.free_blocks() == 8);
  CHECK(blocks.add_sequence(6, counting(10)) == 0);  // freed blocks are no longer shared
}

TEST_CASE("a forked sequence shares its parent's blocks and copies the partly filled one on its first write") {
  KvBlockManager blocks(8, 4);
  blocks.add_sequence(1, counting(6));
  blocks.reserve(1, 6);  // blocks 0 (full) and 1 (2 of 4 slots)
  blocks.fork(1, 2);
  CHECK(blocks.block_table(2) == std::vector<cr::BlockId>{0, 1});
  CHECK(blocks.ref_count(1) == 2);
  CHECK(blocks.fragmentation() == Approx(2.0 / 8.0));  // shared blocks count once

  blocks.append_tokens(2, {40});
  CHECK(blocks.blocks_to_reserve(2, 1) == 1);
  const auto child = blocks.reserve(2, 1);
  CHECK(child->copies == std::vector<BlockCopy>{{1, 2}});
  CHECK(child->slots == std::vector<TokenSlot>{{2, 2}});
  CHECK(blocks.block_table(2) == std::vector<cr::BlockId>{0, 2});
  CHECK(blocks.ref_count(1) == 1);
  CHECK(blocks.ref_count(0) == 2);

  blocks.append_tokens(1, {41});
  const auto parent = blocks.reserve(1, 1);  // block 1 is the parent's alone again: written in place
  CHECK(parent->copies.empty());
  CHECK(parent->slots == std::vector<TokenSlot>{{1, 2}});
}

TEST_CASE("continuous batching admits first come first served within the batch and the prefill budget") {
  KvBlockManager blocks(64, 4);
  BatchScheduler scheduler(blocks, {2, 8});
  scheduler.add(1, counting(5), 10);
  scheduler.add(2, counting(5, 100), 10);
  scheduler.add(3, counting(3, 200), 10);

  // Request 1's prompt whole, request 2's first 3 positions (the budget's rest); 3 waits for a place.
  auto first = scheduler.next_iteration();
  CHECK(work_of(first) == std::vector<Work>{{1, 0, 5, true}, {2, 0, 3, false}});
  CHECK(first.sequences[1].tokens == std::vector<int64_t>{100, 101, 102});
  CHECK(scheduler.state(3) == RequestState::Waiting);
  CHECK(scheduler.running() == 2);
  CHECK_THROWS_WITH(scheduler.append_token(2, 7), Contains("before its last token was computed"));
  scheduler.append_token(1, 11);

  // A decode step for 1 alongside 2's last prompt positions.
  CHECK(work_of(scheduler.next_iteration()) == std::vector<Work>{{1, 5, 1, true}, {2, 3, 2, true}});
  scheduler.append_token(1, 12);
  scheduler.append_token(2, 13);
  CHECK(scheduler.generated(1) == std::vector<int64_t>{11, 12});

  // A finished request leaves at once and the next one joins the same iteration.
  scheduler.finish(1);
  CHECK(scheduler.state(1) == RequestState::Finished);
  CHECK(work_of(scheduler.next_iteration()) == std::vector<Work>{{2, 5, 1, true}, {3, 0, 3, true}});
  scheduler.abort(2);
  scheduler.abort(3);
  CHECK(scheduler.idle());
  CHECK(blocks.free_blocks() == 64);
  scheduler.forget(1);
  CHECK_THROWS_WITH(scheduler.state(1), "no request 1");
}

TEST_CASE("when blocks run out the newest request is preempted, then recomputed from its tokens") {
  KvBlockManager blocks(4, 2);
  BatchScheduler scheduler(blocks, {4, 100});
  scheduler.add(1, counting(3), 3);
  scheduler.add(2, counting(3, 10), 3);
  CHECK(work_of(scheduler.next_iteration()) == std::vector<Work>{{1, 0, 3, true}, {2, 0, 3, true}});
  CHECK(blocks.free_blocks() == 0);
  scheduler.append_token(1, 20);
  scheduler.append_token(2, 21);
  // Position 3 fits the second block of each.
  CHECK(work_of(scheduler.next_iteration()) == std::vector<Work>{{1, 3, 1, true}, {2, 3, 1, true}});
  scheduler.append_token(1, 22);
  scheduler.append_token(2, 23);
  // Position 4 needs a third block each: 2 gives its blocks to 1 and waits, first in line.
  scheduler.add(3, counting(1, 30), 1);
  const auto short_of_blocks = scheduler.next_iteration();
  CHECK(work_of(short_of_blocks) == std::vector<Work>{{1, 4, 1, true}});
  CHECK(short_of_blocks.preempted == std::vector<cr::RequestId>{2});
  CHECK(scheduler.state(2) == RequestState::Preempted);
  CHECK(scheduler.waiting() == 2);
  CHECK(scheduler.generated(2) == std::vector<int64_t>{21, 23});
  scheduler.append_token(1, 24);

  // Once 1 is done, 2 recomputes prompt and generated tokens (5 positions), then 3 follows.
  scheduler.finish(1);
  const auto readmitted = scheduler.next_iteration();
  CHECK(work_of(readmitted) == std::vector<Work>{{2, 0, 5, true}, {3, 0, 1, true}});
  CHECK(readmitted.sequences[0].tokens == std::vector<int64_t>{10, 11, 12, 21, 23});
  CHECK(scheduler.state(2) == RequestState::Running);
}

TEST_CASE("the newest request, short of a block itself, gives way and waits") {
  KvBlockManager blocks(3, 2);
  BatchScheduler scheduler(blocks, {4, 100});
  scheduler.add(1, counting(3), 2);  // blocks 0 and 1, one slot left in 1
  scheduler.add(2, counting(2, 10), 2);  // block 2, full
  CHECK(work_of(scheduler.next_iteration()) == std::vector<Work>{{1, 0, 3, true}, {2, 0, 2, true}});
  scheduler.append_token(1, 5);
  scheduler.append_token(2, 6);
  const auto next = scheduler.next_iteration();
  CHECK(work_of(next) == std::vector<Work>{{1, 3, 1, true}});
  CHECK(next.preempted == std::vector<cr::RequestId>{2});
  scheduler.append_token(1, 7);
  // 1 takes the block 2 left; 2 (3 tokens: 2 blocks) waits while 1 holds all 3.
  CHECK(work_of(scheduler.next_iteration()) == std::vector<Work>{{1, 4, 1, true}});
  CHECK(scheduler.state(2) == RequestState::Preempted);
  CHECK(blocks.free_blocks() == 0);
}

TEST_CASE("requests that can never complete are refused, aborting frees what a request holds") {
  KvBlockManager blocks(4, 2);
  BatchScheduler scheduler(blocks, {4, 100});
  CHECK_THROWS_WITH(scheduler.add(1, counting(5), 4),
                    "request 1: 5 prompt tokens and up to 4 new ones need 5 KV blocks of 2 tokens; the cache has 4");
  CHECK_THROWS_WITH(scheduler.add(2, {}, 4), "request 2: the prompt has no tokens");
  scheduler.add(3, counting(3), 1);
  scheduler.add(4, counting(3, 10), 1);
  scheduler.add(5, counting(3, 20), 1);
  CHECK(work_of(scheduler.next_iteration()).size() == 2);  // 5 waits: no blocks
  scheduler.abort(5);
  CHECK(scheduler.state(5) == RequestState::Aborted);
  scheduler.abort(3);
  CHECK(blocks.free_blocks() == 2);
  CHECK(scheduler.running() == 1);
  CHECK_THROWS_WITH(scheduler.append_token(3, 1), "request 3 is aborted: only a running request takes tokens");
  CHECK_THROWS_WITH(scheduler.forget(4), "request 4 is running: only finished or aborted requests are forgotten");
  CHECK(cr::request_state_name(RequestState::Preempted) == "preempted");
}

TEST_CASE("OpenAI request bodies are parsed with defaults and refused field by field") {
  const cr::CompletionRequest plain = cr::parse_completion_request(R"({"prompt": "Hi"})", false);
  CHECK(plain.prompt == "Hi");
  CHECK(plain.max_tokens == 16);
  CHECK_FALSE(plain.max_tokens_given);
  CHECK(plain.temperature == 1.0);
  CHECK(plain.n == 1);
  const cr::CompletionRequest full = cr::parse_completion_request(
      R"({"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "top_p": 0.5, "top_k": -1, "stop": ["\n", "END"],
          "seed": 9, "n": 2, "stream": true, "model": "m", "user": "u", "presence_penalty": 0})",
      false);
  CHECK(*full.prompt_tokens == std::vector<int64_t>{1, 2, 3});
  CHECK(full.top_k == 0);
  CHECK(full.stop == std::vector<std::string>{"\n", "END"});
  CHECK(*full.seed == 9);
  CHECK(full.stream);
  const auto refused = [](const std::string& body, bool chat) -> std::string {
    try {
      cr::parse_completion_request(body, chat);
    } catch (const cr::ApiError& e) {
      CHECK(e.status() == 400);
      return e.body()["error"]["param"].is_null() ? std::string("-") : e.body()["error"]["param"].get<std::string>();
    }
    return "accepted";
  };
  CHECK(refused("[1, 2]", false) == "-");
  CHECK(refused(R"({"prompt": "a", "temprature": 1})", false) == "temprature");
  CHECK(refused(R"({"prompt": ["a", "b"]})", false) == "prompt");
  CHECK(refused(R"({"prompt": "a", "n": 17})", false) == "n");
  CHECK(refused(R"({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]})", false) == "stop");
  CHECK(refused(R"({"prompt": "a", "frequency_penalty": 0.5})", false) == "frequency_penalty");
  CHECK(refused(R"({"prompt": "a", "max_tokens": 0})", false) == "max_tokens");
  CHECK(refused(R"({"messages": []})", true) == "messages");
  CHECK(refused(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})", true) ==
        "messages");
  CHECK(refused(R"({"prompt": "a"})", true) == "prompt");
}

TEST_CASE("chat messages become LLaMA-2's [INST] format or a plain transcript") {
  const std::vector<cr::ChatMessage> messages = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Name?"}};
  CHECK(cr::apply_chat_template(cr::ChatTemplate::Llama2, messages) ==
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Name? [/INST]");
  CHECK(cr::apply_chat_template(cr::ChatTemplate::Plain, messages) ==
        "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Name?\nAssistant:");
  CHECK_THROWS_AS(cr::apply_chat_template(cr::ChatTemplate::Llama2, {{"user", "a"}, {"user", "b"}}), cr::ApiError);
}

TEST_CASE("completion text holds back what may still change and ends before a stop string") {
  const auto bytes = cr::make_tokenizer("byte", std::nullopt);
  const auto ids = [](const std::string& text) {
    std::vector<int64_t> out;
    for (unsigned char c : text) out.push_back(c);
    return out;
  };
  cr::CompletionText text(*bytes, {"END"}, bytes->eot_id());
  CHECK(text.advance(ids("ab"), false) == "ab");
  CHECK(text.advance(ids("abE"), false).empty());  // "E" may begin "END"
  CHECK(text.advance(ids("abEx"), false) == "Ex");
  const std::string e_acute = "\xc3\xa9";
  CHECK(text.advance(ids("abEx\xc3"), false).empty());  // half of a character
  CHECK(text.advance(ids("abEx" + e_acute), false) == e_acute);
  CHECK(text.advance(ids("abEx" + e_acute + "yEN"), false) == "y");
  CHECK(text.advance(ids("abEx" + e_acute + "yENDz"), false).empty());
  CHECK(text.stopped());
  CHECK(text.sent() == "abEx" + e_acute + "y");

  cr::CompletionText ended(*bytes, {}, bytes->eot_id());
  std::vector<int64_t> with_end = ids("ok\xc3");
  with_end.push_back(bytes->eot_id());
  CHECK(ended.advance(with_end, true) == "ok\xc3");  // final: nothing held back, the end token is no text
}
