// The native SentencePiece tokenizer against libsentencepiece itself. Only this executable links
// the library: its built-in protobuf runtime cannot share a process with LibTorch's.
#include <catch2/catch.hpp>
#include <sentencepiece_processor.h>

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/shared_data.h"
#include "tests/temp_dir.h"
#include "core/base/error.h"
#include "core/text/protobuf_wire.h"
#include "core/text/tokenizer.h"

namespace fs = std::filesystem;
using Ids = std::vector<uint32_t>;

namespace {

const fs::path kDataDir = CR_SHARED_DATA;
const fs::path kModelPath = kDataDir / "llama2-tokenizer.model";

bool have_model() { return cr::test::shared_data_present({kModelPath}); }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

using cr::test::TempDir;

// Protobuf encoding, to derive model variants from the LLaMA model. A message field that occurs
// again is merged into the earlier one, so appending a TrainerSpec or NormalizerSpec holding
// one field overrides just that field; appending a SentencePiece adds a piece.
std::string varint(uint64_t value) {
  std::string out;
  for (; value >= 0x80; value >>= 7) out += static_cast<char>((value & 0x7F) | 0x80);
  out += static_cast<char>(value);
  return out;
}
std::string varint_field(uint32_t field, uint64_t value) {
  return varint(field << 3) + varint(value);
}
std::string bytes_field(uint32_t field, std::string_view bytes) {
  return varint(field << 3 | 2) + varint(bytes.size()) + std::string(bytes);
}
std::string float_field(uint32_t field, float value) {
  std::string bytes(sizeof value, '\0');
  std::memcpy(bytes.data(), &value, sizeof value);
  return varint(field << 3 | 5) + bytes;
}

constexpr int kNormal = 1;
constexpr int kUserDefined = 4;
constexpr int kUnused = 5;
constexpr int kByte = 6;

std::string piece_field(std::string_view text, float score, int type) {
  return bytes_field(1, bytes_field(1, text) + float_field(2, score) + varint_field(3, type));
}
std::string trainer_spec(const std::string& fields) { return bytes_field(2, fields); }
std::string normalizer_spec(const std::string& fields) { return bytes_field(3, fields); }

// The model with its 256 BYTE pieces left out (the ids after them shift down).
std::string without_byte_pieces(std::string_view model) {
  cr::protobuf::WireReader reader(model, "model");
  std::string out;
  while (reader.next()) {
    if (reader.wire_type() != cr::protobuf::WireType::Bytes) FAIL("unexpected top-level field");
    const uint32_t field = reader.field();
    const std::string_view body = reader.bytes();
    bool is_byte_piece = false;
    if (field == 1) {
      cr::protobuf::WireReader piece(body, "piece");
      while (piece.next()) {
        if (piece.field() == 3) {
          is_byte_piece = piece.int32() == kByte;
        } else {
          piece.skip();
        }
      }
    }
    if (!is_byte_piece) out += bytes_field(field, body);
  }
  return out;
}

// One serialized model, loaded by both implementations.
struct Models {
  Models(const TempDir& dir, const std::string& serialized) {
    const auto status = reference.LoadFromSerializedProto(serialized);
    INFO(status.ToString());
    REQUIRE(status.ok());
    const fs::path path = dir.path() / "tokenizer.model";
    write_file(path, serialized);
    ours = cr::load_sentencepiece_tokenizer(path.string());
  }

  sentencepiece::SentencePieceProcessor reference;
  std::unique_ptr<cr::Tokenizer> ours;
};

std::string show(const std::vector<uint32_t>& ids, size_t from, size_t count) {
  std::string out;
  for (size_t i = from; i < ids.size() && i < from + count; ++i) {
    out += std::to_string(ids[i]) + " ";
  }
  return out;
}

std::string escaped(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 120)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      out += "\\x" + std::string(1, "0123456789abcdef"[byte >> 4]) + "0123456789abcdef"[byte & 15];
    } else {
      out += c;
    }
  }
  return out;
}

// How encode and decode of `text` differ between the two, or "" if they agree. BOS comes first
// in ours, so the reference gets it prepended too.
std::string difference(const Models& models, std::string_view text) {
  std::vector<int> pieces;
  if (!models.reference.Encode(text, &pieces).ok()) return "libsentencepiece cannot encode it";
  Ids expected{static_cast<uint32_t>(models.reference.bos_id())};
  expected.insert(expected.end(), pieces.begin(), pieces.end());
  const Ids actual = models.ours->encode(text);
  if (actual != expected) {
    size_t at = 0;
    while (at < actual.size() && at < expected.size() && actual[at] == expected[at]) ++at;
    const size_t from = at < 3 ? 0 : at - 3;
    return "encode of '" + escaped(text) + "' differs at id " + std::to_string(at) + ": ours " +
           show(actual, from, 8) + "vs " + show(expected, from, 8);
  }
  std::string decoded;
  const std::vector<int> with_bos(expected.begin(), expected.end());
  if (!models.reference.Decode(with_bos, &decoded).ok()) return "libsentencepiece cannot decode";
  if (models.ours->decode(actual) != decoded) {
    return "decode of '" + escaped(text) + "' differs: ours '" +
           escaped(models.ours->decode(actual)) + "' vs '" + escaped(decoded) + "'";
  }
  return "";
}

// The first few of `lines`, each on a line of its own.
std::string first_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size() && i < 5; ++i) out += "\n" + lines[i];
  return out;
}

void check_agree(const Models& models, const std::vector<std::string>& texts) {
  std::vector<std::string> differences;
  for (const auto& text : texts) {
    std::string found = difference(models, text);
    if (!found.empty()) differences.push_back(std::move(found));
  }
  INFO(differences.size() << " of " << texts.size() << " texts differ" << first_lines(differences));
  CHECK(differences.empty());
}

// Random id sequences without BOS/EOS (ours splits at those), in which byte pieces that form
// invalid UTF-8 and the unknown piece occur.
void check_random_decodes(const Models& models) {
  std::mt19937 random(7);
  const int size = models.reference.GetPieceSize();
  std::uniform_int_distribution<int> any_id(0, size - 1);
  std::uniform_int_distribution<int> length(0, 12);
  std::vector<std::string> differences;
  for (int sample = 0; sample < 2000; ++sample) {
    std::vector<int> ids;
    for (int n = length(random); n > 0; --n) {
      const int id = any_id(random);
      if (id != models.reference.bos_id() && id != models.reference.eos_id()) ids.push_back(id);
    }
    std::string expected;
    REQUIRE(models.reference.Decode(ids, &expected).ok());
    const std::string actual = models.ours->decode(Ids(ids.begin(), ids.end()));
    if (actual != expected) {
      differences.push_back("ids " + show(Ids(ids.begin(), ids.end()), 0, ids.size()) + ": ours '" +
                            escaped(actual) + "' vs '" + escaped(expected) + "'");
    }
  }
  INFO(differences.size() << " of 2000 decodes differ" << first_lines(differences));
  CHECK(differences.empty());
}

std::vector<std::string> tricky_texts() {
  return {
      "",
      " ",
      "   ",
      "\t",
      "\n",
      "a",
      "Hello world",
      " Hello",
      "Hello ",
      "  Hello   world  ",
      "Hello\tworld\n",
      "\n\nTwo newlines first\n\n",
      "tab\t\tand\r\ncarriage return",
      "a          b",
      "\xF0\x9F\x99\x82 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD emoji",
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 family",
      "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",
      "\xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF "
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
      "caf\xC3\xA9 na\xC3\xAFve \xC3\x91"
      "and\xC3\xBA \xC3\xBC\xC3\x9F",
      "e\xCC\x81 combining accent",
      "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 "
      "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87",
      "1234567890 3.14159 2024-01-01 1,000,000",
      "<s> </s> <unk> <0x41> <pad>",
      "\xE2\x96\x81 literal space symbol \xE2\x96\x81\xE2\x96\x81x",
      "no\xC2\xA0"
      "break\xE3\x80\x80ideographic space",
      "invalid \xFF\xFE utf-8 \xC3 and \xED\xA0\x80 surrogate \xF8\x88\x80\x80\x80",
      std::string("nul\0byte", 8),
      "\xEF\xBF\xBD replacement character",
      "int main() { return 0; }  // code\n    indented();",
      std::string(1000, 'a'),
      std::string(300, ' ') + "x" + std::string(300, ' '),
      "ALL CAPS AND MiXeD cAsE, punctuation!?;:'\"()[]{}",
  };
}

std::vector<std::string> shakespeare_lines(size_t max_lines) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(kDataDir / "tinyshakespeare.txt"));
  for (std::string line; lines.size() < max_lines && std::getline(in, line);) lines.push_back(line);
  return lines;
}

const std::string& shakespeare() {
  static const std::string text = read_file(kDataDir / "tinyshakespeare.txt");
  return text;
}

bool have_shakespeare() { return cr::test::shared_data_present({kDataDir / "tinyshakespeare.txt"}); }

}  // namespace

TEST_CASE("sentencepiece reference: LLaMA model metadata", "[sentencepiece_reference]") {
  if (!have_model()) return;
  const TempDir dir;
  const Models models(dir, read_file(kModelPath));
  CHECK(models.ours->vocab_size() == static_cast<uint32_t>(models.reference.GetPieceSize()));
  CHECK(models.ours->eot_id() == static_cast<uint32_t>(models.reference.eos_id()));
  CHECK(models.ours->encode("")[0] == static_cast<uint32_t>(models.reference.bos_id()));
}

TEST_CASE("sentencepiece reference: tricky strings", "[sentencepiece_reference]") {
  if (!have_model()) return;
  const TempDir dir;
  check_agree(Models(dir, read_file(kModelPath)), tricky_texts());
}

TEST_CASE("sentencepiece reference: every line of tinyshakespeare", "[sentencepiece_reference]") {
  if (!have_model() || !have_shakespeare()) return;
  const TempDir dir;
  check_agree(Models(dir, read_file(kModelPath)), shakespeare_lines(SIZE_MAX));
}

TEST_CASE("sentencepiece reference: 100 KB of tinyshakespeare as one text",
          "[sentencepiece_reference]") {
  if (!have_model() || !have_shakespeare()) return;
  const TempDir dir;
  check_agree(Models(dir, read_file(kModelPath)), {shakespeare().substr(0, 100 * 1024)});
}

TEST_CASE("sentencepiece reference: decode of arbitrary ids", "[sentencepiece_reference]") {
  if (!have_model()) return;
  const TempDir dir;
  check_random_decodes(Models(dir, read_file(kModelPath)));
}

TEST_CASE("sentencepiece reference: model variants", "[sentencepiece_reference]") {
  if (!have_model()) return;
  const std::string llama = read_file(kModelPath);
  struct Variant {
    const char* name;
    std::string model;
  };
  const std::vector<Variant> variants = {
      {"remove_extra_whitespaces", llama + normalizer_spec(varint_field(4, 1))},
      {"no add_dummy_prefix", llama + normalizer_spec(varint_field(3, 0))},
      {"neither", llama + normalizer_spec(varint_field(3, 0) + varint_field(4, 1))},
      {"no escape_whitespaces", llama + normalizer_spec(varint_field(5, 0))},
      {"treat_whitespace_as_suffix", llama + trainer_spec(varint_field(24, 1))},
      {"user-defined pieces",
       llama + piece_field("<sep>", 0, kUserDefined) + piece_field("qzx", 0, kUserDefined) +
           piece_field("qzxw", 0, kUserDefined) + piece_field("\xE2\x96\x81zqv", 0, kUserDefined) +
           piece_field("q z", 0, kUserDefined)},
      {"unused pieces", llama + piece_field("\xE2\x96\x81Hello\xE2\x96\x81world", 0, kUnused) +
                            piece_field("\xE2\x96\x81the\xE2\x96\x81", 0, kUnused) +
                            piece_field("ing,", -5, kUnused)},
      {"no byte_fallback", without_byte_pieces(llama) + trainer_spec(varint_field(35, 0))},
      // LLaMA's pieces never span words; these do, and outrank all of LLaMA's.
      {"pieces across words", llama + piece_field("o\xE2\x96\x81", 0, kNormal) +
                                  piece_field("o\xE2\x96\x81w", 0, kNormal) +
                                  piece_field("e\xE2\x96\x81\xE2\x96\x81", -1, kNormal)},
  };
  std::vector<std::string> texts = tricky_texts();
  texts.push_back(
      "a <sep> b<sep>c qzx qzxwv  q z zqv x zqvzqv  Hello world, the the singing, ring,");
  texts.push_back("qzxw<sep>  q  z q z ");
  if (have_shakespeare()) {
    for (auto& line : shakespeare_lines(2000)) texts.push_back(std::move(line));
    texts.push_back(shakespeare().substr(0, 20000));
  }
  for (const auto& variant : variants) {
    SECTION(variant.name) {
      const TempDir dir;
      const Models models(dir, variant.model);
      check_agree(models, texts);
      check_random_decodes(models);
    }
  }
}

TEST_CASE("sentencepiece reference: unsupported and malformed models are errors",
          "[sentencepiece_reference]") {
  if (!have_model()) return;
  const std::string llama = read_file(kModelPath);
  const TempDir dir;
  const std::string path = (dir.path() / "bad.model").string();
  const auto load_error = [&](std::string_view bytes) -> std::string {
    write_file(path, bytes);
    try {
      cr::load_sentencepiece_tokenizer(path);
    } catch (const cr::Error& e) {
      return e.what();
    }
    return "";
  };

  CHECK_THAT(load_error(llama + trainer_spec(varint_field(3, 1))),
             Catch::Contains(path) && Catch::Contains("UNIGRAM") &&
                 Catch::Contains("only BPE models are supported"));
  CHECK_THAT(load_error(llama + normalizer_spec(bytes_field(1, "nmt_nfkc") + bytes_field(2, "x"))),
             Catch::Contains(path) && Catch::Contains("nmt_nfkc"));
  CHECK_THAT(load_error(without_byte_pieces(llama)),
             Catch::Contains(path) && Catch::Contains("byte pieces"));

  // Cut inside the first length, inside a piece, and near the end.
  for (const size_t length : {size_t{1}, size_t{1000}, llama.size() - 3}) {
    CAPTURE(length);
    CHECK_THAT(load_error(std::string_view(llama).substr(0, length)),
               Catch::Contains(path) && Catch::Contains("malformed protobuf at byte"));
  }
  CHECK_THAT(load_error(llama + "\x0A\xFF\xFF\xFF\xFF\x0F"),
             Catch::Contains("at byte " + std::to_string(llama.size()) + ":") &&
                 Catch::Contains("needs 4294967295 bytes"));
}
