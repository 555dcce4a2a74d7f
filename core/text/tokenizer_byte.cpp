// The byte tokenizer, plus the pieces shared by all tokenizers (special-token splitting and
// the factory).
#include "core/base/error.h"
#include "core/text/tokenizer.h"

namespace cr {
namespace {

constexpr uint32_t kByteEndOfTextId = 256;

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<uint32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<uint32_t> ids;
    ids.reserve(text.size());
    if (!allow_special) {
      append_bytes(text, ids);
      return ids;
    }
    const auto pieces = split_at_end_of_text(text);
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i > 0) ids.push_back(kByteEndOfTextId);
      append_bytes(pieces[i], ids);
    }
    return ids;
  }

  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::string text;
    text.reserve(ids.size());
    for (const uint32_t id : ids) {
      if (id < 256) {
        text += static_cast<char>(id);
      } else if (id == kByteEndOfTextId) {
        text += kEndOfText;
      } else {
        fail("byte tokenizer: token id {} is outside the vocabulary (size {})", id, vocab_size());
      }
    }
    return text;
  }

  uint32_t vocab_size() const override { return 257; }
  uint32_t eot_id() const override { return kByteEndOfTextId; }
  std::string name() const override { return "byte"; }

 private:
  static void append_bytes(std::string_view text, std::vector<uint32_t>& ids) {
    for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
  }
};

}  // namespace

std::vector<std::string_view> split_at_end_of_text(std::string_view text) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  for (size_t found; (found = text.find(kEndOfText, start)) != std::string_view::npos;
       start = found + kEndOfText.size()) {
    pieces.push_back(text.substr(start, found - start));
  }
  pieces.push_back(text.substr(start));
  return pieces;
}

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind,
                                          const std::optional<std::string>& dir) {
  if (kind == "byte") return make_byte_tokenizer();
  if (kind == "gpt2") {
    if (!dir) {
      fail("tokenizer 'gpt2' needs a directory holding encoder.json + vocab.bpe "
           "(or vocab.json + merges.txt)");
    }
    return load_gpt2_tokenizer(*dir);
  }
  if (kind == "sentencepiece") {
    if (!dir) {
      fail("tokenizer 'sentencepiece' needs a .model file or a directory holding "
           "tokenizer.model (or llama2-tokenizer.model)");
    }
    return load_sentencepiece_tokenizer(*dir);
  }
  fail("unknown tokenizer '{}': expected 'byte', 'gpt2' or 'sentencepiece'", kind);
}

}  // namespace cr
