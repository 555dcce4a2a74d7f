#include <catch2/catch.hpp>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/shared_data.h"
#include "tests/temp_dir.h"
#include "core/base/error.h"
#include "core/text/tokenizer.h"

namespace fs = std::filesystem;
using Ids = std::vector<uint32_t>;

namespace {

const std::string kDataDir = CR_SHARED_DATA;

bool have_gpt2_files() {
  return cr::test::shared_data_present({fs::path(kDataDir) / "gpt2-encoder.json", fs::path(kDataDir) / "gpt2-vocab.bpe"});
}

// Loaded once: the vocabulary takes a while to parse.
const cr::Tokenizer& gpt2() {
  static const auto tokenizer = cr::load_gpt2_tokenizer(kDataDir);
  return *tokenizer;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The message of the cr::Error that `load` throws; fails the test if it throws nothing.
template <typename Load>
std::string error_message(Load&& load) {
  try {
    load();
  } catch (const cr::Error& e) {
    return e.what();
  }
  FAIL("expected a cr::Error");
  return {};
}

using cr::test::TempDir;

}  // namespace

TEST_CASE("byte tokenizer: every byte is its own id", "[text]") {
  const auto tokenizer = cr::make_byte_tokenizer();
  CHECK(tokenizer->vocab_size() == 257);
  CHECK(tokenizer->eot_id() == 256);
  CHECK(tokenizer->name() == "byte");
  CHECK(tokenizer->encode("Hi\xff") == Ids{72, 105, 255});

  std::string all_bytes;
  for (int byte = 0; byte < 256; ++byte) all_bytes += static_cast<char>(byte);
  const Ids ids = tokenizer->encode(all_bytes);
  REQUIRE(ids.size() == 256);
  for (uint32_t i = 0; i < 256; ++i) CHECK(ids[i] == i);
  CHECK(tokenizer->decode(ids) == all_bytes);
}

TEST_CASE("byte tokenizer: <|endoftext|> is special only when allowed", "[text]") {
  const auto tokenizer = cr::make_byte_tokenizer();
  CHECK(tokenizer->encode("a<|endoftext|>b", true) == Ids{97, 256, 98});
  CHECK(tokenizer->encode("<|endoftext|><|endoftext|>", true) == Ids{256, 256});
  const Ids plain = tokenizer->encode("a<|endoftext|>b");
  CHECK(plain.size() == 15);
  CHECK(tokenizer->decode(plain) == "a<|endoftext|>b");
  CHECK(tokenizer->decode({97, 256, 98}) == "a<|endoftext|>b");
  CHECK_THROWS_AS(tokenizer->decode({257}), cr::Error);
}

TEST_CASE("split_at_end_of_text keeps empty pieces", "[text]") {
  using Pieces = std::vector<std::string_view>;
  CHECK(cr::split_at_end_of_text("abc") == Pieces{"abc"});
  CHECK(cr::split_at_end_of_text("<|endoftext|>x<|endoftext|>") == Pieces{"", "x", ""});
}

TEST_CASE("make_tokenizer chooses by kind", "[text]") {
  CHECK(cr::make_tokenizer("byte", std::nullopt)->name() == "byte");
  CHECK_THAT(error_message([] { cr::make_tokenizer("gpt2", std::nullopt); }),
             Catch::Contains("needs a directory"));
  CHECK_THAT(error_message([] { cr::make_tokenizer("bpe", std::nullopt); }),
             Catch::Contains("unknown tokenizer 'bpe'"));
  if (!have_gpt2_files()) return;
  CHECK(cr::make_tokenizer("gpt2", kDataDir)->name() == "gpt2");
}

TEST_CASE("gpt2: known encodings", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const auto& tokenizer = gpt2();
  CHECK(tokenizer.vocab_size() == 50257);
  CHECK(tokenizer.eot_id() == 50256);
  CHECK(tokenizer.encode("Hello world") == Ids{15496, 995});
  CHECK(tokenizer.encode(" the") == Ids{262});
  CHECK(tokenizer.encode("").empty());
  CHECK(tokenizer.decode({15496, 995}) == "Hello world");
  CHECK_THROWS_AS(tokenizer.decode({50257}), cr::Error);
}

TEST_CASE("gpt2: <|endoftext|> is special only when allowed", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const auto& tokenizer = gpt2();
  CHECK(tokenizer.encode("<|endoftext|>", true) == Ids{50256});
  CHECK(tokenizer.encode("Hello<|endoftext|> the", true) == Ids{15496, 50256, 262});
  const Ids plain = tokenizer.encode("<|endoftext|>");
  CHECK(plain.size() > 1);
  for (const uint32_t id : plain) CHECK(id != 50256);
  CHECK(tokenizer.decode(plain) == "<|endoftext|>");
  CHECK(tokenizer.decode({50256}) == "<|endoftext|>");
}

// Expected ids come from OpenAI's reference encoder; they pin down the pre-tokenizer's
// handling of contractions, digits, whitespace runs and non-ASCII text.
TEST_CASE("gpt2: matches the reference encoder", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const auto& tokenizer = gpt2();
  CHECK(tokenizer.encode("I'm don't we'll they've") ==
        Ids{40, 1101, 836, 470, 356, 1183, 484, 1053});
  CHECK(tokenizer.encode("1234567 3.14") == Ids{10163, 2231, 3134, 513, 13, 1415});
  CHECK(tokenizer.encode("a  \n\n b\t\tc   ") ==
        Ids{64, 220, 220, 628, 275, 197, 197, 66, 220, 220, 220});
  CHECK(tokenizer.encode("h\xC3\xA9llo w\xC3\xB6rld \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x99\x82 "
                         "na\xC3\xAFve caf\xC3\xA9") ==
        Ids{71, 2634, 18798, 266, 30570, 335, 220, 19526, 254, 25001, 121, 32485, 41492, 40304});
}

TEST_CASE("gpt2: decode(encode(text)) == text", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const auto& tokenizer = gpt2();
  const std::vector<std::string> texts = {
      "h\xC3\xA9llo w\xC3\xB6rld \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x99\x82 "
      "na\xC3\xAFve caf\xC3\xA9",
      "I'm don't we'll they've",
      "1234567 3.14",
      "a  \n\n b\t\tc   ",
      "   leading and trailing   ",
      "'s 'S '' ''' 'll'",
      "\xFF\xFE invalid \xC3 utf-8 \xED\xA0\x80",
      std::string("nul \0 byte", 10),
  };
  for (const auto& text : texts) {
    CAPTURE(text);
    CHECK(tokenizer.decode(tokenizer.encode(text)) == text);
  }
}

TEST_CASE("gpt2: all of tinyshakespeare round trips", "[text][gpt2]") {
  const fs::path path = fs::path(kDataDir) / "tinyshakespeare.txt";
  if (!have_gpt2_files() || !cr::test::shared_data_present({path})) return;
  const std::string text = read_file(path);
  const Ids ids = gpt2().encode(text);
  CHECK(ids.size() > text.size() / 5);
  CHECK(ids.size() < text.size() / 2);
  CHECK(gpt2().decode(ids) == text);
}

TEST_CASE("gpt2: a repeated word encodes the same every time", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const auto& tokenizer = gpt2();
  const Ids once = tokenizer.encode(" tokenization");
  REQUIRE(once.size() > 1);
  CHECK(tokenizer.encode(" tokenization") == once);
  Ids thrice;
  for (int i = 0; i < 3; ++i) thrice.insert(thrice.end(), once.begin(), once.end());
  CHECK(tokenizer.encode(" tokenization tokenization tokenization") == thrice);
}

TEST_CASE("gpt2: loads vocab.json + merges.txt", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const TempDir dir;
  fs::copy_file(fs::path(kDataDir) / "gpt2-encoder.json", dir.path() / "vocab.json");
  fs::copy_file(fs::path(kDataDir) / "gpt2-vocab.bpe", dir.path() / "merges.txt");
  const auto tokenizer = cr::load_gpt2_tokenizer(dir.path().string());
  CHECK(tokenizer->encode("Hello world") == Ids{15496, 995});
  CHECK(tokenizer->eot_id() == 50256);
}

TEST_CASE("gpt2: missing files name the directory and the files looked for", "[text][gpt2]") {
  const TempDir dir;
  const std::string empty_dir = dir.path().string();
  const std::string message = error_message([&] { cr::load_gpt2_tokenizer(empty_dir); });
  CHECK_THAT(message, Catch::Contains(empty_dir));
  CHECK_THAT(message, Catch::Contains("encoder.json + vocab.bpe"));
  CHECK_THAT(message, Catch::Contains("vocab.json + merges.txt"));

  const std::string missing_dir = empty_dir + "/absent";
  CHECK_THAT(error_message([&] { cr::load_gpt2_tokenizer(missing_dir); }),
             Catch::Contains(missing_dir) && Catch::Contains("no such directory"));
}

TEST_CASE("gpt2: a bad merges file is reported with file:line", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const TempDir dir;
  fs::copy_file(fs::path(kDataDir) / "gpt2-encoder.json", dir.path() / "encoder.json");
  const std::string merges = (dir.path() / "vocab.bpe").string();
  const auto load = [&] { cr::load_gpt2_tokenizer(dir.path().string()); };

  write_file(merges, "#version: 0.2\n\xC4\xA0 t\nthree tokens here\n");
  CHECK_THAT(error_message(load),
             Catch::Contains(merges + ":3") && Catch::Contains("expected two tokens"));

  write_file(merges, "#version: 0.2\n\xC4\xA0 t\nonlyone\n");
  CHECK_THAT(error_message(load), Catch::Contains(merges + ":3"));

  // Regression: an empty merges file was accepted and encoded without merges.
  write_file(merges, "#version: 0.2\n");
  CHECK_THAT(error_message(load), Catch::Contains(merges + ": holds no merges"));

  write_file(merges, "\xC4\xA0 t\nzqzqzq xjxjxj\n");
  CHECK_THAT(error_message(load), Catch::Contains(merges + ":2") &&
                                      Catch::Contains("\"zqzqzq\" is not in the vocabulary"));
}

TEST_CASE("gpt2: a bad encoder file names the file", "[text][gpt2]") {
  if (!have_gpt2_files()) return;
  const TempDir dir;
  fs::copy_file(fs::path(kDataDir) / "gpt2-vocab.bpe", dir.path() / "vocab.bpe");
  const std::string encoder = (dir.path() / "encoder.json").string();
  const auto load = [&] { cr::load_gpt2_tokenizer(dir.path().string()); };

  write_file(encoder, "{\"a\": 0,");
  CHECK_THAT(error_message(load), Catch::Contains(encoder) && Catch::Contains("not valid JSON"));

  write_file(encoder, "{\"a\": 0, \"b\": 5}");
  CHECK_THAT(error_message(load), Catch::Contains(encoder) && Catch::Contains("ids must be"));
}

namespace {

const fs::path kLlamaModel = fs::path(kDataDir) / "llama2-tokenizer.model";

bool have_llama_model() { return cr::test::shared_data_present({kLlamaModel}); }

const cr::Tokenizer& llama() {
  static const auto tokenizer = cr::load_sentencepiece_tokenizer(kLlamaModel.string());
  return *tokenizer;
}

}  // namespace

TEST_CASE("sentencepiece: known encodings", "[text][sentencepiece]") {
  if (!have_llama_model()) return;
  const auto& tokenizer = llama();
  CHECK(tokenizer.vocab_size() == 32000);
  CHECK(tokenizer.eot_id() == 2);
  CHECK(tokenizer.name() == "sentencepiece:llama2-tokenizer.model");
  CHECK(tokenizer.encode("Hello world") == Ids{1, 15043, 3186});
  CHECK(tokenizer.encode("") == Ids{1});
  CHECK(tokenizer.decode({1, 15043, 3186, 2}) == "Hello world");
  CHECK(tokenizer.decode({15043, 3186}) == "Hello world");
  CHECK_THROWS_AS(tokenizer.decode({32000}), cr::Error);
}

TEST_CASE("sentencepiece: decode(encode(text)) == text", "[text][sentencepiece]") {
  if (!have_llama_model()) return;
  const auto& tokenizer = llama();
  std::vector<std::string> texts = {
      "h\xC3\xA9llo w\xC3\xB6rld \xE4\xBD\xA0\xE5\xA5\xBD",
      "\xF0\x9F\x99\x82 byte fallback",
      "  two leading spaces, a\ttab and\n\nnewlines  ",
  };
  const fs::path shakespeare = fs::path(kDataDir) / "tinyshakespeare.txt";
  if (cr::test::shared_data_present({shakespeare})) texts.push_back(read_file(shakespeare).substr(0, 10000));
  for (const auto& text : texts) {
    CAPTURE(text.substr(0, 100));
    const Ids ids = tokenizer.encode(text);
    REQUIRE(!ids.empty());
    CHECK(ids.front() == 1);
    CHECK(tokenizer.decode(ids) == text);
  }
}

TEST_CASE("sentencepiece: documents joined by eot decode to the joined text",
          "[text][sentencepiece]") {
  if (!have_llama_model()) return;
  const auto& tokenizer = llama();
  Ids ids = tokenizer.encode("First document.");
  ids.push_back(tokenizer.eot_id());
  const Ids second = tokenizer.encode(" Second one.");
  ids.insert(ids.end(), second.begin(), second.end());
  CHECK(tokenizer.decode(ids) == "First document. Second one.");
}

TEST_CASE("sentencepiece: <s> and </s> are special only when allowed", "[text][sentencepiece]") {
  if (!have_llama_model()) return;
  const auto& tokenizer = llama();
  CHECK(tokenizer.encode("</s>", true) == Ids{1, 2});
  CHECK(tokenizer.encode("<s></s><s>", true) == Ids{1, 1, 2, 1});
  const Ids mixed = tokenizer.encode("Hello</s>world<s>", true);
  CHECK(mixed == Ids{1, 15043, 2, 3186, 1});

  const std::string text = "a <s> b </s> c";
  const Ids plain = tokenizer.encode(text);
  REQUIRE(plain.size() > 1);
  CHECK(plain.front() == 1);
  for (size_t i = 1; i < plain.size(); ++i) CHECK((plain[i] != 1 && plain[i] != 2));
  CHECK(tokenizer.decode(plain) == text);
}

TEST_CASE("make_tokenizer loads sentencepiece models", "[text][sentencepiece]") {
  CHECK_THAT(error_message([] { cr::make_tokenizer("sentencepiece", std::nullopt); }),
             Catch::Contains("needs a .model file"));
  CHECK_THAT(error_message([] { cr::make_tokenizer("bpe", std::nullopt); }),
             Catch::Contains("'sentencepiece'"));
  if (!have_llama_model()) return;
  CHECK(cr::make_tokenizer("sentencepiece", kDataDir)->encode("Hello world") ==
        Ids{1, 15043, 3186});
  CHECK(cr::make_tokenizer("sentencepiece", kLlamaModel.string())->vocab_size() == 32000);

  const TempDir dir;
  fs::copy_file(kLlamaModel, dir.path() / "tokenizer.model");
  CHECK(cr::make_tokenizer("sentencepiece", dir.path().string())->name() ==
        "sentencepiece:tokenizer.model");
}

TEST_CASE("sentencepiece: missing and unloadable models are errors naming the path",
          "[text][sentencepiece]") {
  const TempDir dir;
  const std::string missing = (dir.path() / "absent.model").string();
  CHECK_THAT(error_message([&] { cr::load_sentencepiece_tokenizer(missing); }),
             Catch::Contains(missing));

  CHECK_THAT(error_message([&] { cr::load_sentencepiece_tokenizer(dir.path().string()); }),
             Catch::Contains(dir.path().string()) && Catch::Contains("tokenizer.model") &&
                 Catch::Contains("llama2-tokenizer.model"));

  // Fixed-seed noise, so that the test sees the same bytes on every run.
  std::string noise(4096, '\0');
  uint32_t state = 12345;
  for (char& byte : noise) {
    state = state * 1664525u + 1013904223u;
    byte = static_cast<char>(state >> 24);
  }
  const std::string garbage = (dir.path() / "garbage.model").string();
  write_file(garbage, noise);
  const std::string message = error_message([&] { cr::load_sentencepiece_tokenizer(garbage); });
  CHECK_THAT(message, Catch::Contains(garbage));
  INFO(message);
  CHECK(message.size() > garbage.size() + 30);
}
