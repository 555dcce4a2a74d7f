// Tokenizers: text to token ids and back. Byte-level (every byte is a token) and GPT-2
// byte-level BPE (encoder.json + vocab.bpe, or vocab.json + merges.txt).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cr {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Special tokens such as "<|endoftext|>" in `text` are plain text unless allow_special.
  virtual std::vector<uint32_t> encode(std::string_view text, bool allow_special = false) const = 0;
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  virtual uint32_t vocab_size() const = 0;
  virtual uint32_t eot_id() const = 0;  // separates documents in a token stream
  virtual std::string name() const = 0;
};

// The text of the document separator in both tokenizers.
inline constexpr std::string_view kEndOfText = "<|endoftext|>";

// The pieces of `text` between occurrences of kEndOfText (n occurrences give n + 1 pieces, some
// possibly empty); an encoder emits eot_id() between consecutive pieces.
std::vector<std::string_view> split_at_end_of_text(std::string_view text);

// Ids 0..255 are bytes, 256 is <|endoftext|>; vocab_size 257.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Loads encoder.json + vocab.bpe, vocab.json + merges.txt, or gpt2-encoder.json +
// gpt2-vocab.bpe from `dir`, or else Hugging Face's tokenizer.json (its BPE model.vocab and
// model.merges); the error lists what was looked for.
std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& dir);

// A LLaMA-style SentencePiece model: the .model file itself, or a directory holding
// tokenizer.model or llama2-tokenizer.model. encode() starts every text with BOS (the model's
// bos_id()); eot_id() is its eos_id(); decode() drops both. With allow_special, literal "<s>"
// and "</s>" in the text become BOS and EOS. The error names the path and SentencePiece's reason.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path_or_dir);

// kind: "byte", "gpt2" or "sentencepiece" (the last two need dir).
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::optional<std::string>& dir);

}  // namespace cr
