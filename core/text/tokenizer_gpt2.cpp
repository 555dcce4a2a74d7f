// GPT-2 byte-level BPE. Text is cut into words by GPT-2's pre-tokenizer pattern, and each
// word's bytes are merged pairwise by rank until no ranked pair is left. The vocabulary and
// merges come from OpenAI's or Hugging Face's file pair, or from a Hugging Face tokenizer.json.
#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/base/json.h"
#include "core/base/strings.h"
#include "core/text/tokenizer.h"
#include "core/text/utf8.h"

namespace cr {
namespace {

namespace fs = std::filesystem;
using utf8::CharClass;

constexpr uint32_t kNoRank = UINT32_MAX;
// Bounds the word cache on large corpora; clearing it only costs re-running BPE.
constexpr size_t kMaxCachedWords = size_t{1} << 20;

struct FileNames {
  const char* encoder;
  const char* merges;
};
constexpr std::array<FileNames, 3> kFileNames{{
    {"encoder.json", "vocab.bpe"},
    {"vocab.json", "merges.txt"},
    {"gpt2-encoder.json", "gpt2-vocab.bpe"},
}};
// Hugging Face's single-file form, looked for when none of the pairs is there.
constexpr const char* kTokenizerJson = "tokenizer.json";

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves and the others take
// code points from U+0100 on, in byte order, so that every token is printable in the files.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (char32_t byte = 0; byte < 256; ++byte) {
    const bool printable =
        (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE);
    table[byte] = printable ? byte : next++;
  }
  return table;
}

// Raw bytes of a token as written in the vocabulary files; nullopt if a character is not one
// of bytes_to_unicode's.
std::optional<std::string> token_to_bytes(std::string_view token) {
  static const auto byte_of = [] {
    std::unordered_map<char32_t, char> inverse;
    const auto table = bytes_to_unicode();
    for (size_t byte = 0; byte < table.size(); ++byte) {
      inverse[table[byte]] = static_cast<char>(byte);
    }
    return inverse;
  }();
  std::string bytes;
  for (size_t pos = 0; pos < token.size();) {
    const auto code_point = utf8::decode(token, pos);
    const auto found = byte_of.find(code_point.value);
    if (found == byte_of.end()) return std::nullopt;
    bytes += found->second;
    pos += code_point.length;
  }
  return bytes;
}

// The end of the match at `pos` of GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// whose alternatives are tried in order.
class WordSplitter {
 public:
  explicit WordSplitter(std::string_view text) : text_(text) {}

  size_t match_end(size_t pos) const {
    if (const size_t end = contraction_end(pos)) return end;
    // The three " ?X+" alternatives: a run of one class, optionally after a single ' '.
    const CharClass first = class_at(pos).cls;
    if (first != CharClass::Space) return run_end(pos, first);
    if (text_[pos] == ' ' && pos + 1 < text_.size()) {
      const CharClass next = class_at(pos + 1).cls;
      if (next != CharClass::Space) return run_end(pos + 1, next);
    }
    // \s+(?!\S) and \s+.
    size_t last_start = pos;
    size_t end = pos;
    while (end < text_.size()) {
      const auto c = class_at(end);
      if (c.cls != CharClass::Space) break;
      last_start = end;
      end += c.length;
    }
    // Before a non-space, the run gives up its last character (which then prefixes the next
    // word), unless that would leave it empty.
    return end == text_.size() || last_start == pos ? end : last_start;
  }

 private:
  struct Classified {
    CharClass cls;
    size_t length;
  };

  Classified class_at(size_t pos) const {
    const auto code_point = utf8::decode(text_, pos);
    return {utf8::classify(code_point.value), code_point.length};
  }

  size_t run_end(size_t pos, CharClass cls) const {
    while (pos < text_.size()) {
      const auto c = class_at(pos);
      if (c.cls != cls) break;
      pos += c.length;
    }
    return pos;
  }

  // 0 when no contraction starts at pos.
  size_t contraction_end(size_t pos) const {
    if (text_[pos] != '\'') return 0;
    const std::string_view rest = text_.substr(pos + 1);
    for (const std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      if (rest.substr(0, suffix.size()) == suffix) return pos + 1 + suffix.size();
    }
    return 0;
  }

  std::string_view text_;
};

uint64_t pair_key(uint32_t left, uint32_t right) { return (uint64_t{left} << 32) | right; }

// One merge as written in a file, in rank order; `where` locates it for messages.
struct MergeRule {
  std::string left, right;
  std::string where;
};

// "left right": exactly two non-empty tokens separated by one space.
MergeRule parse_merge_text(const std::string& text, std::string where) {
  const size_t space = text.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == text.size() ||
      text.find(' ', space + 1) != std::string::npos) {
    fail("{}: expected two tokens separated by a space, got \"{}\"", where, text);
  }
  return {text.substr(0, space), text.substr(space + 1), std::move(where)};
}

nlohmann::json read_json(const fs::path& path) { return read_json_file(path.string()); }

// vocab.bpe / merges.txt: one merge per line after an optional "#version" line.
std::vector<MergeRule> read_merges_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  std::vector<MergeRule> merges;
  std::string line;
  for (size_t line_number = 1; std::getline(in, line); ++line_number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_number == 1 && line.rfind("#version", 0) == 0)) continue;
    merges.push_back(parse_merge_text(line, fmt::format("{}:{}", path.string(), line_number)));
  }
  // Without merges every byte is its own token: a tokenizer that runs, but not GPT-2's.
  if (merges.empty()) fail("{}: holds no merges (one \"a b\" pair per line)", path.string());
  return merges;
}

struct TokenizerJson {
  nlohmann::json vocab;  // token text -> id, added tokens included
  std::vector<MergeRule> merges;
};

// The encoder implements GPT-2's text handling: no normalizer, then the ByteLevel pre-tokenizer
// with GPT-2's regex and no prefix space. Other tokenizer.json files (LLaMA-3's Split + ByteLevel,
// a normalizer) would encode differently, so they are refused rather than approximated.
void check_gpt2_text_handling(const nlohmann::json& json, const fs::path& path) {
  if (const auto normalizer = json.find("normalizer"); normalizer != json.end() && !normalizer->is_null()) {
    fail("{}: has a normalizer ({}); the gpt2 tokenizer implements GPT-2's text handling, which has none",
         path.string(), shortened(normalizer->dump()));
  }
  const auto pre = json.find("pre_tokenizer");
  const bool gpt2_pre = pre != json.end() && pre->is_object() && pre->value("type", "") == "ByteLevel" &&
                        pre->value("use_regex", true) && !pre->value("add_prefix_space", false);
  if (pre != json.end() && !gpt2_pre) {
    fail("{}: pre_tokenizer {} is not GPT-2's (ByteLevel with its regex, no prefix space); the gpt2 tokenizer "
         "implements only that one", path.string(), shortened(pre->dump()));
  }
}

// tokenizer.json's BPE model: model.vocab, and model.merges as "a b" strings (older files) or
// ["a", "b"] pairs (newer ones, which allow spaces inside tokens). Added tokens that the model's
// vocabulary lacks (an end-of-text token, say) join it at their ids.
TokenizerJson read_tokenizer_json(const fs::path& path) {
  const auto json = read_json(path);
  const auto model = json.find("model");
  if (model == json.end() || !model->is_object()) fail("{}: no \"model\" object", path.string());
  const auto type = model->find("type");
  if (type != model->end() && *type != "BPE") {
    fail("{}: model.type is {}; the gpt2 tokenizer needs a BPE model", path.string(), shortened(type->dump()));
  }
  const auto vocab = model->find("vocab");
  const auto merges = model->find("merges");
  if (vocab == model->end() || !vocab->is_object()) fail("{}: model.vocab is not an object", path.string());
  if (merges == model->end() || !merges->is_array()) fail("{}: model.merges is not a list", path.string());

  check_gpt2_text_handling(json, path);
  if (merges->empty()) fail("{}: model.merges is empty", path.string());

  TokenizerJson result{*vocab, {}};
  if (const auto added = json.find("added_tokens"); added != json.end() && added->is_array()) {
    for (size_t i = 0; i < added->size(); ++i) {
      const auto& token = (*added)[i];
      if (!token.is_object() || !token.contains("content") || !token.contains("id")) continue;
      if (!token["content"].is_string()) {
        fail("{}: added_tokens[{}].content must be a string, got {}", path.string(), i, shortened(token["content"].dump()));
      }
      if (!result.vocab.contains(token["content"])) result.vocab[token["content"].get<std::string>()] = token["id"];
    }
  }
  result.merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const auto& merge = (*merges)[i];
    std::string where = fmt::format("{}: model.merges[{}]", path.string(), i);
    if (merge.is_string()) {
      result.merges.push_back(parse_merge_text(merge.get<std::string>(), std::move(where)));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string() &&
               !merge[0].get<std::string>().empty() && !merge[1].get<std::string>().empty()) {
      result.merges.push_back({merge[0].get<std::string>(), merge[1].get<std::string>(), std::move(where)});
    } else {
      fail("{}: expected \"a b\" or [\"a\", \"b\"], got {}", where, shortened(merge.dump()));
    }
  }
  return result;
}

struct Merge {
  uint32_t rank;
  uint32_t merged_id;
};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  // vocab_source names where `vocab` came from, for messages.
  Gpt2Tokenizer(const nlohmann::json& vocab, const std::string& vocab_source,
                const std::vector<MergeRule>& merges) {
    const auto encoder = read_encoder(vocab, vocab_source);
    add_merges(merges, vocab_source, encoder);
  }

  std::vector<uint32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<uint32_t> ids;
    ids.reserve(text.size() / 4);
    if (!allow_special) {
      encode_ordinary(text, ids);
      return ids;
    }
    const auto pieces = split_at_end_of_text(text);
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i > 0) ids.push_back(eot_id_);
      encode_ordinary(pieces[i], ids);
    }
    return ids;
  }

  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::string text;
    for (const uint32_t id : ids) {
      if (id >= token_bytes_.size()) {
        fail("gpt2 tokenizer: token id {} is outside the vocabulary (size {})", id, vocab_size());
      }
      text += token_bytes_[id];
    }
    return text;
  }

  uint32_t vocab_size() const override { return static_cast<uint32_t>(token_bytes_.size()); }
  uint32_t eot_id() const override { return eot_id_; }
  std::string name() const override { return "gpt2"; }

 private:
  // Fills token_bytes_, byte_ids_ and eot_id_; returns token text (as in the files) -> id.
  std::unordered_map<std::string, uint32_t> read_encoder(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object() || json.empty()) {
      fail("{}: expected a JSON object mapping token text to id", source);
    }

    std::unordered_map<std::string, uint32_t> encoder;
    encoder.reserve(json.size());
    token_bytes_.resize(json.size());
    std::vector<bool> id_taken(json.size());
    for (const auto& [token, id_json] : json.items()) {
      // Ids must be 0..n-1, each once, so that every id decodes.
      if (!id_json.is_number_unsigned() || id_json.get<uint64_t>() >= json.size()) {
        fail("{}: token \"{}\" has id {}; ids must be the integers 0..{}", source, token,
             shortened(id_json.dump()), json.size() - 1);
      }
      const auto id = id_json.get<uint32_t>();
      if (id_taken[id]) fail("{}: id {} is used by more than one token", source, id);
      id_taken[id] = true;
      auto bytes = token_to_bytes(token);
      if (!bytes) {
        fail("{}: token \"{}\" has characters outside GPT-2's byte-to-unicode alphabet",
             source, token);
      }
      token_bytes_[id] = std::move(*bytes);
      encoder.emplace(token, id);
    }

    const auto unicode_of_byte = bytes_to_unicode();
    for (size_t byte = 0; byte < 256; ++byte) {
      const auto found = encoder.find(utf8::encode(unicode_of_byte[byte]));
      if (found == encoder.end()) {
        fail("{}: no token for byte 0x{:02X}; a byte-level vocabulary has all 256",
             source, byte);
      }
      byte_ids_[byte] = found->second;
    }
    const auto eot = encoder.find(std::string(kEndOfText));
    if (eot == encoder.end()) fail("{}: no \"{}\" token", source, kEndOfText);
    eot_id_ = eot->second;
    return encoder;
  }

  void add_merges(const std::vector<MergeRule>& merges, const std::string& vocab_source,
                  const std::unordered_map<std::string, uint32_t>& encoder) {
    uint32_t rank = 0;
    for (const auto& merge : merges) {
      const auto id_of = [&](const std::string& token) {
        const auto found = encoder.find(token);
        if (found == encoder.end()) {
          fail("{}: merge \"{} {}\": \"{}\" is not in the vocabulary {}", merge.where, merge.left,
               merge.right, token, vocab_source);
        }
        return found->second;
      };
      const uint32_t left_id = id_of(merge.left);
      const uint32_t right_id = id_of(merge.right);
      const uint32_t merged_id = id_of(merge.left + merge.right);
      // A repeated pair takes its later rank, as GPT-2's reference encoder does.
      merges_[pair_key(left_id, right_id)] = {rank++, merged_id};
    }
  }

  uint32_t rank_of(uint32_t left, uint32_t right) const {
    const auto found = merges_.find(pair_key(left, right));
    return found == merges_.end() ? kNoRank : found->second.rank;
  }

  void encode_ordinary(std::string_view text, std::vector<uint32_t>& ids) const {
    const WordSplitter splitter(text);
    for (size_t pos = 0; pos < text.size();) {
      const size_t end = splitter.match_end(pos);
      append_word(text.substr(pos, end - pos), ids);
      pos = end;
    }
  }

  void append_word(std::string_view word, std::vector<uint32_t>& ids) const {
    if (word.size() == 1) {
      ids.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
      return;
    }
    std::string key(word);
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      const auto found = cache_.find(key);
      if (found != cache_.end()) {
        ids.insert(ids.end(), found->second.begin(), found->second.end());
        return;
      }
    }
    auto word_ids = bpe(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(std::move(key), std::move(word_ids));
  }

  // Repeatedly merges every occurrence (left to right) of the lowest-ranked adjacent pair.
  // ranks[i] is the rank of (parts[i], parts[i + 1]) and is looked up again only next to a
  // merge, so a long word costs one hash lookup per merge rather than per pair per step.
  std::vector<uint32_t> bpe(std::string_view word) const {
    std::vector<uint32_t> parts(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      parts[i] = byte_ids_[static_cast<unsigned char>(word[i])];
    }
    if (parts.size() < 2) return parts;
    std::vector<uint32_t> ranks(parts.size() - 1);
    for (size_t i = 0; i + 1 < parts.size(); ++i) ranks[i] = rank_of(parts[i], parts[i + 1]);
    std::vector<char> merged_here(parts.size());

    while (parts.size() > 1) {
      const auto best = std::min_element(ranks.begin(), ranks.end());
      if (*best == kNoRank) break;
      // min_element finds the first lowest rank, so no occurrence of the pair lies before it.
      const size_t first = static_cast<size_t>(best - ranks.begin());
      const uint32_t left = parts[first];
      const uint32_t right = parts[first + 1];
      const uint32_t merged_id = merges_.at(pair_key(left, right)).merged_id;

      size_t out = first;
      for (size_t i = first; i < parts.size(); ++out) {
        if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
          parts[out] = merged_id;
          merged_here[out] = 1;
          i += 2;
        } else {
          parts[out] = parts[i];
          merged_here[out] = 0;
          if (i < ranks.size()) ranks[out] = ranks[i];
          i += 1;
        }
      }
      parts.resize(out);
      ranks.resize(out - 1);
      for (size_t j = first == 0 ? 0 : first - 1; j + 1 < out; ++j) {
        if (merged_here[j] || merged_here[j + 1]) ranks[j] = rank_of(parts[j], parts[j + 1]);
      }
    }
    return parts;
  }

  std::vector<std::string> token_bytes_;  // id -> raw bytes
  std::array<uint32_t, 256> byte_ids_{};  // byte -> id of its single-byte token
  std::unordered_map<uint64_t, Merge> merges_;
  uint32_t eot_id_ = 0;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<uint32_t>> cache_;  // word -> ids
};

}  // namespace

std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& dir) {
  if (!utf8::has_unicode_classes()) {
    fail("the gpt2 tokenizer needs the C.UTF-8 locale to classify non-ASCII characters, and "
         "this system does not have it");
  }
  std::error_code error;
  for (const auto& names : kFileNames) {
    const fs::path encoder = fs::path(dir) / names.encoder;
    const fs::path merges = fs::path(dir) / names.merges;
    if (fs::is_regular_file(encoder, error) && fs::is_regular_file(merges, error)) {
      return std::make_unique<Gpt2Tokenizer>(read_json(encoder), encoder.string(), read_merges_file(merges));
    }
  }
  const fs::path tokenizer_json = fs::path(dir) / kTokenizerJson;
  if (fs::is_regular_file(tokenizer_json, error)) {
    const auto parsed = read_tokenizer_json(tokenizer_json);
    return std::make_unique<Gpt2Tokenizer>(parsed.vocab, tokenizer_json.string() + " (model.vocab)", parsed.merges);
  }
  std::string looked_for;
  for (const auto& names : kFileNames) {
    looked_for += fmt::format("{} + {}, ", names.encoder, names.merges);
  }
  looked_for += kTokenizerJson;
  fail("no GPT-2 tokenizer files in {}{}: looked for {}", dir,
       fs::is_directory(dir, error) ? "" : " (no such directory)", looked_for);
}

}  // namespace cr
