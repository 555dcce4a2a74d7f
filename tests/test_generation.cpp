// Sampling on hand-made logits, cached generation against full recomputation, corpus
// evaluation against per-window losses, and the GPT-2 tokenizer read from tokenizer.json.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/data/dataset.h"
#include "core/infer/evaluation.h"
#include "core/infer/generation.h"
#include "core/infer/causal_lm_decoder.h"
#include "core/infer/sampling.h"
#include "core/text/tokenizer.h"
#include "models/causal_lm.h"
#include "models/model_spec.h"
#include "shared_data.h"
#include "temp_dir.h"

using namespace cr;
using cr::test::TempDir;
namespace fs = std::filesystem;

namespace {

// Logits whose softmax is exactly `probs` (up to rounding).
torch::Tensor logits_of(const std::vector<double>& probs) {
  return torch::log(torch::tensor(probs, torch::kDouble));
}

void check_distribution(const std::vector<double>& actual, const std::vector<double>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("id " << i);
    CHECK(actual[i] == Approx(expected[i]).margin(1e-12));
  }
}

CausalLM tiny_model(const std::string& preset, uint64_t seed) {
  auto model = build_model(find_model_preset(preset).spec, seed);
  model->eval();
  return model;
}

// Every architecture of the zoo, as its tiny preset.
const std::vector<std::string> kTinyPresets{"gpt2-tiny", "opt-tiny", "llama-tiny"};

std::vector<int64_t> random_tokens(int64_t count, int64_t vocab, uint64_t seed) {
  torch::manual_seed(seed);
  auto t = torch::randint(vocab, {count}, torch::kLong);
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + count};
}

}  // namespace

TEST_CASE("greedy takes the largest logit, the lowest id among equals", "[sampling]") {
  TokenSampler greedy({/*temperature=*/0.0, 0, 1.0}, 1);
  CHECK(greedy.next(torch::tensor({0.5, 2.0, -1.0, 2.0})) == 1);
  CHECK(greedy.next(torch::tensor({3.0f, 2.0f, 1.0f})) == 0);
  check_distribution(sampling_distribution(torch::tensor({0.5, 2.0, 2.0}), {0.0, 0, 1.0}), {0, 1, 0});
}

TEST_CASE("top-k of 1 samples exactly what greedy picks", "[sampling]") {
  TokenSampler greedy({0.0, 0, 1.0}, 0);
  TokenSampler top1({1.3, 1, 1.0}, 12345);
  torch::manual_seed(3);
  for (int i = 0; i < 200; ++i) {
    const auto logits = torch::randn({97});
    CHECK(top1.next(logits) == greedy.next(logits));
  }
}

TEST_CASE("temperature, top-k and top-p give the hand-computed distributions", "[sampling]") {
  // Sorted by probability: id 1 (0.5), id 3 (0.25), id 2 (0.15), id 0 (0.1).
  const auto logits = logits_of({0.1, 0.5, 0.15, 0.25});
  check_distribution(sampling_distribution(logits, {1.0, 0, 1.0}), {0.1, 0.5, 0.15, 0.25});
  // top-p keeps the smallest most-likely set whose mass is >= p.
  check_distribution(sampling_distribution(logits, {1.0, 0, 0.7}), {0, 0.5 / 0.75, 0, 0.25 / 0.75});
  check_distribution(sampling_distribution(logits, {1.0, 0, 0.8}), {0, 0.5 / 0.9, 0.15 / 0.9, 0.25 / 0.9});
  check_distribution(sampling_distribution(logits, {1.0, 0, 0.4}), {0, 1, 0, 0});
  check_distribution(sampling_distribution(logits, {1.0, 0, 0.95}), {0.1, 0.5, 0.15, 0.25});
  check_distribution(sampling_distribution(logits, {1.0, 2, 1.0}), {0, 0.5 / 0.75, 0, 0.25 / 0.75});
  // Temperature 0.5 squares the probabilities before renormalising.
  const double z = 0.01 + 0.25 + 0.0225 + 0.0625;
  check_distribution(sampling_distribution(logits, {0.5, 0, 1.0}), {0.01 / z, 0.25 / z, 0.0225 / z, 0.0625 / z});
  // top-k first, then top-p within what is left: {1, 3} renormalised is (2/3, 1/3); p 0.6 keeps id 1.
  check_distribution(sampling_distribution(logits, {1.0, 2, 0.6}), {0, 1, 0, 0});
}

TEST_CASE("sampling is deterministic for a seed and follows the distribution", "[sampling]") {
  const auto logits = logits_of({0.1, 0.5, 0.15, 0.25});
  const SamplingOptions options{1.0, 0, 1.0};
  auto draw = [&](uint64_t seed, int count) {
    TokenSampler sampler(options, seed);
    std::vector<int64_t> ids;
    for (int i = 0; i < count; ++i) ids.push_back(sampler.next(logits));
    return ids;
  };
  CHECK(draw(7, 300) == draw(7, 300));
  CHECK(draw(7, 300) != draw(8, 300));

  const auto ids = draw(99, 20000);
  std::vector<double> frequency(4, 0.0);
  for (const auto id : ids) frequency[id] += 1.0 / ids.size();
  const std::vector<double> expected{0.1, 0.5, 0.15, 0.25};
  for (size_t i = 0; i < 4; ++i) CHECK(frequency[i] == Approx(expected[i]).margin(0.015));
}

TEST_CASE("sampling options out of range are rejected by name", "[sampling]") {
  CHECK_THROWS_WITH(TokenSampler({-1.0, 0, 1.0}, 0), Catch::Contains("temperature"));
  CHECK_THROWS_WITH(TokenSampler({1.0, -2, 1.0}, 0), Catch::Contains("top_k"));
  CHECK_THROWS_WITH(TokenSampler({1.0, 0, 0.0}, 0), Catch::Contains("top_p"));
  CHECK_THROWS_WITH(TokenSampler({1.0, 0, 1.5}, 0), Catch::Contains("top_p"));
}

TEST_CASE("cached decoding gives the logits of full recomputation", "[generation]") {
  for (const auto& preset : kTinyPresets) {
    INFO(preset);
    const auto decoder = make_cached_decoder(tiny_model(preset, 11));
    const auto tokens = random_tokens(24, 512, 5);
    const auto full = decoder->full_logits(torch::tensor(tokens).view({1, -1}));
    // A prompt chunk of 9, then one token at a time.
    decoder->clear_cache();
    std::vector<torch::Tensor> pieces{
        decoder->extend(torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + 9)).view({1, -1}))};
    for (size_t i = 9; i < tokens.size(); ++i) {
      pieces.push_back(decoder->extend(torch::tensor({tokens[i]}).view({1, 1})));
    }
    CHECK(decoder->cached_length() == 24);
    CHECK(torch::allclose(torch::cat(pieces, 1), full, 1e-4, 1e-5));
  }
}

TEST_CASE("cached generation equals recomputation token for token", "[generation]") {
  for (const auto& preset : kTinyPresets) {
    INFO(preset);
    const auto decoder = make_cached_decoder(tiny_model(preset, 11));
    const auto prompt = random_tokens(7, 512, 6);
    GenerationOptions greedy;
    greedy.max_new_tokens = 48;
    greedy.sampling = {0.0, 0, 1.0};
    const auto cached = generate(*decoder, prompt, greedy);
    CHECK(cached.tokens.size() == 48);
    CHECK(cached.stop == StopReason::MaxNewTokens);
    CHECK(cached.tokens == generate_recomputing(*decoder, prompt, greedy).tokens);

    GenerationOptions sampled = greedy;
    sampled.sampling = {0.9, 50, 0.9};
    sampled.seed = 21;
    const auto first = generate(*decoder, prompt, sampled);
    CHECK(first.tokens == generate(*decoder, prompt, sampled).tokens);
    CHECK(first.tokens == generate_recomputing(*decoder, prompt, sampled).tokens);
  }
}

TEST_CASE("generation stops at the stop token and at the end of the context", "[generation]") {
  auto decoder = make_cached_decoder(tiny_model("gpt2-tiny", 11));
  const auto prompt = random_tokens(7, 512, 6);
  GenerationOptions options;
  options.max_new_tokens = 10;
  options.sampling = {0.0, 0, 1.0};
  const auto free_run = generate(*decoder, prompt, options);
  options.stop_token = free_run.tokens.at(2);
  const auto stopped = generate(*decoder, prompt, options);
  CHECK(stopped.stop == StopReason::StopToken);
  CHECK(stopped.tokens.back() == free_run.tokens.at(2));
  CHECK(stopped.tokens.size() <= 3);

  // gpt2-tiny has 128 positions: a 126-token prompt leaves room for 2.
  options.stop_token.reset();
  const auto long_prompt = random_tokens(126, 512, 8);
  const auto full = generate(*decoder, long_prompt, options);
  CHECK(full.stop == StopReason::ContextFull);
  CHECK(full.tokens.size() == 2);
  CHECK_THROWS_WITH(generate(*decoder, random_tokens(129, 512, 8), options), Catch::Contains("max_seq_len) is 128"));
  CHECK_THROWS_WITH(generate(*decoder, {}, options), Catch::Contains("no tokens"));

  options.vocab_limit = 3;
  for (const auto id : generate(*decoder, prompt, options).tokens) CHECK(id < 3);
}

TEST_CASE("evaluation is the token-weighted mean of per-window losses", "[evaluation]") {
  auto model = tiny_model("gpt2-tiny", 4);
  const int64_t seq_len = 16, windows = 5;
  const auto ids = random_tokens(windows * seq_len + 1, 512, 9);
  const TokenCorpus corpus({make_memory_stream(std::vector<uint32_t>(ids.begin(), ids.end()), "test tokens")},
                           seq_len, 512);
  REQUIRE(corpus.num_windows() == windows);
  const MeanBatchLoss loss = [&](const torch::Tensor& inputs, const torch::Tensor& targets) {
    return model->loss(inputs, targets);
  };

  std::vector<double> per_window;
  for (int64_t w = 0; w < windows; ++w) {
    const auto window = torch::tensor(std::vector<int64_t>(ids.begin() + w * seq_len, ids.begin() + (w + 1) * seq_len + 1));
    torch::NoGradGuard no_grad;
    per_window.push_back(
        model->loss(window.slice(0, 0, seq_len).view({1, -1}), window.slice(0, 1).view({1, -1})).item<double>());
  }

  // Batches of 2: the last holds one window and must count half as much as the others.
  const auto all = evaluate_corpus(corpus, loss, 2, std::nullopt, torch::kCPU);
  double mean = 0.0;
  for (const double l : per_window) mean += l / windows;
  CHECK(all.loss == Approx(mean).epsilon(1e-6));
  CHECK(all.perplexity == Approx(std::exp(mean)).epsilon(1e-6));
  CHECK(all.tokens == windows * seq_len);
  CHECK(all.batches == 3);

  const auto first = evaluate_corpus(corpus, loss, 2, int64_t{1}, torch::kCPU);
  CHECK(first.loss == Approx((per_window[0] + per_window[1]) / 2).epsilon(1e-6));
  CHECK(first.tokens == 2 * seq_len);
}

TEST_CASE("evaluation data is data.val, else all of data.train", "[evaluation]") {
  const TempDir dir;
  std::ofstream(dir.file("train.txt")) << std::string(33 * 10 + 1, 'a');
  std::ofstream(dir.file("val.txt")) << std::string(33 * 3 + 1, 'b');
  DataConfig data;
  data.format = "text";
  data.tokenizer = "byte";
  data.seq_len = 33;
  data.val_fraction = 0.2;
  data.train = {dir.file("train.txt")};
  CHECK(open_eval_data(data, 257, 0).corpus->num_windows() == 10);  // val_fraction not applied
  data.val = {dir.file("val.txt")};
  CHECK(open_eval_data(data, 257, 0).corpus->num_windows() == 3);
}

TEST_CASE("gpt2 tokenizer from a Hugging Face tokenizer.json", "[tokenizer]") {
  const fs::path data_dir = CR_SHARED_DATA;
  if (!cr::test::shared_data_present({data_dir / "gpt2-encoder.json", data_dir / "gpt2-vocab.bpe"})) return;
  nlohmann::json vocab;
  std::ifstream(data_dir / "gpt2-encoder.json") >> vocab;
  std::vector<std::string> merges;
  std::ifstream merges_file(data_dir / "gpt2-vocab.bpe");
  for (std::string line; std::getline(merges_file, line);) {
    if (!line.empty() && line.rfind("#version", 0) != 0) merges.push_back(line);
  }
  const TempDir dir;
  auto write = [&](const nlohmann::json& merge_list) {
    nlohmann::json file = {{"version", "1.0"}, {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
    std::ofstream(dir.file("tokenizer.json")) << file.dump();
  };

  SECTION("merges as \"a b\" strings") { write(merges); }
  SECTION("merges as [\"a\", \"b\"] pairs") {
    nlohmann::json pairs = nlohmann::json::array();
    for (const auto& merge : merges) {
      const auto space = merge.find(' ');
      pairs.push_back(nlohmann::json::array({merge.substr(0, space), merge.substr(space + 1)}));
    }
    write(pairs);
  }
  const auto tokenizer = load_gpt2_tokenizer(dir.path().string());
  CHECK(tokenizer->encode("Hello world") == std::vector<uint32_t>{15496, 995});
  CHECK(tokenizer->eot_id() == 50256);
  CHECK(tokenizer->vocab_size() == 50257);
  CHECK(tokenizer->decode({15496, 995}) == "Hello world");
}

TEST_CASE("a bad tokenizer.json names the file and the entry", "[tokenizer]") {
  const TempDir dir;
  nlohmann::json vocab = {{"a", 0}, {"b", 1}};
  auto load = [&](const nlohmann::json& model, const nlohmann::json& text_handling = nlohmann::json::object()) {
    nlohmann::json file = text_handling;
    file["model"] = model;
    std::ofstream(dir.file("tokenizer.json")) << file.dump();
    try {
      load_gpt2_tokenizer(dir.path().string());
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(load({{"type", "Unigram"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}),
             Catch::Contains("tokenizer.json") && Catch::Contains("needs a BPE model"));
  CHECK_THAT(load({{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", 3}}}),
             Catch::Contains("model.merges[1]"));
  CHECK_THAT(load({{"type", "BPE"}, {"vocab", vocab}}), Catch::Contains("model.merges is not a list"));
  CHECK_THAT(load({{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}),
             Catch::Contains("model.merges is empty"));
  // Regression: LLaMA-3 style files (a Split pre-tokenizer with its own regex) were read as GPT-2's.
  const nlohmann::json bpe = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}};
  const nlohmann::json llama3_pre = {
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "(?i:'s|'t)"}}}},
                           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}}};
  CHECK_THAT(load(bpe, llama3_pre),
             Catch::Contains("tokenizer.json: pre_tokenizer {\"pretokenizers\"") && Catch::Contains("is not GPT-2's"));
  CHECK_THAT(load(bpe, {{"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", true}}}}),
             Catch::Contains("is not GPT-2's"));
  CHECK_THAT(load(bpe, {{"normalizer", {{"type", "NFC"}}}}), Catch::Contains("has a normalizer ({\"type\":\"NFC\"})"));
  // GPT-2's own settings pass these checks (and fail later only for this toy vocabulary's missing bytes).
  CHECK_THAT(load(bpe, {{"normalizer", nullptr},
                        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}),
             Catch::Contains("no token for byte"));
}
