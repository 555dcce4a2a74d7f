// Follows libsentencepiece's normalizer.cc, bpe_model.cc, model_interface.cc and the encode and
// decode steps of sentencepiece_processor.cc, so that ids match the library's bit for bit.
#include "core/text/sentencepiece_bpe.h"

#include <algorithm>
#include <queue>

#include "core/base/error.h"
#include "core/text/utf8.h"

namespace cr::spm {
namespace {

// U+2581, which stands for a space inside pieces.
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";
// U+FFFD, which stands for each byte that is not part of valid UTF-8.
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

const char* model_type_name(ModelType type) {
  switch (type) {
    case ModelType::Unigram: return "UNIGRAM";
    case ModelType::Bpe: return "BPE";
    case ModelType::Word: return "WORD";
    case ModelType::Char: return "CHAR";
  }
  return "unknown";
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The byte a BYTE piece stands for: "<0x0A>" is 10. Exactly this spelling (upper-case hex, two
// digits) is valid; -1 for anything else.
int piece_to_byte(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int high = hex_digit(piece[3]);
  const int low = hex_digit(piece[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

// Bytes in the UTF-8 character that starts with `lead`, judged by the lead byte alone, as the
// merge step splits text that normalization has already made valid.
size_t char_length(char lead) {
  const auto byte = static_cast<unsigned char>(lead);
  if (byte < 0xC0) return 1;
  if (byte < 0xE0) return 2;
  return byte < 0xF0 ? 3 : 4;
}

void append_unescaped(std::string_view piece, std::string& out) {
  for (size_t at; (at = piece.find(kSpaceSymbol)) != std::string_view::npos;) {
    out.append(piece.substr(0, at));
    out += ' ';
    piece.remove_prefix(at + kSpaceSymbol.size());
  }
  out.append(piece);
}

}  // namespace

BpeModel::BpeModel(ModelProto proto, const std::string& source) : proto_(std::move(proto)) {
  const ModelType model_type = proto_.trainer_spec.model_type;
  if (model_type != ModelType::Bpe) {
    fail("SentencePiece model {} is of type {}: only BPE models are supported", source,
         model_type_name(model_type));
  }
  // Normalization rules (NFKC and the like) come as a compiled character map that this class
  // cannot apply; LLaMA's models use the identity normalizer, which has none.
  for (const NormalizerSpec* spec : {&proto_.normalizer_spec, &proto_.denormalizer_spec}) {
    if (!spec->precompiled_charsmap.empty()) {
      const std::string name = spec->name.empty() ? "" : " ('" + spec->name + "')";
      fail(
          "SentencePiece model {} uses normalization rules{}: only the identity normalizer "
          "is supported",
          source, name);
    }
  }

  const bool byte_fallback = proto_.trainer_spec.byte_fallback;
  std::array<bool, 256> byte_found{};
  for (size_t i = 0; i < proto_.pieces.size(); ++i) {
    const Piece& piece = proto_.pieces[i];
    const int id = static_cast<int>(i);
    if (piece.text.empty()) fail("SentencePiece model {}: piece {} is empty", source, id);
    const bool mergeable = piece.type == PieceType::Normal ||
                           piece.type == PieceType::UserDefined || piece.type == PieceType::Unused;
    if (!(mergeable ? pieces_ : reserved_).emplace(piece.text, id).second) {
      fail("SentencePiece model {}: piece '{}' is defined twice", source, piece.text);
    }
    if (piece.type == PieceType::UserDefined) {
      user_defined_[static_cast<unsigned char>(piece.text[0])].push_back(piece.text);
    } else if (piece.type == PieceType::Unknown) {
      if (unk_id_ >= 0) fail("SentencePiece model {}: more than one unknown piece", source);
      unk_id_ = id;
    } else if (piece.type == PieceType::Byte) {
      if (!byte_fallback) {
        fail("SentencePiece model {}: byte piece '{}' although byte_fallback is off", source,
             piece.text);
      }
      const int byte = piece_to_byte(piece.text);
      if (byte < 0) fail("SentencePiece model {}: invalid byte piece '{}'", source, piece.text);
      byte_found[static_cast<size_t>(byte)] = true;
      byte_ids_[static_cast<size_t>(byte)] = id;
    }
  }
  if (unk_id_ < 0) fail("SentencePiece model {}: no unknown piece", source);
  if (byte_fallback && std::count(byte_found.begin(), byte_found.end(), true) != 256) {
    fail("SentencePiece model {}: byte_fallback is on but not all 256 byte pieces exist", source);
  }
  // A merge across a word start would form a piece holding the space symbol after another
  // character. Unused pieces are split back by the pair that last formed them anywhere in the
  // text, which whole-text merging shares between words, so they keep it whole-text too.
  space_ = proto_.normalizer_spec.escape_whitespaces ? kSpaceSymbol : " ";
  words_independent_ = true;
  for (const auto& [text, id] : pieces_) {
    for (size_t at = text.find(space_, 1); at != std::string_view::npos;
         at = text.find(space_, at + 1)) {
      if (at < space_.size() || text.substr(at - space_.size(), space_.size()) != space_) {
        words_independent_ = false;
      }
    }
    if (type(id) == PieceType::Unused) words_independent_ = false;
  }
  for (auto& candidates : user_defined_) {
    std::sort(candidates.begin(), candidates.end(),
              [](std::string_view a, std::string_view b) { return a.size() > b.size(); });
  }
}

int BpeModel::piece_to_id(std::string_view piece) const {
  if (const auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (const auto it = pieces_.find(piece); it != pieces_.end()) return it->second;
  return unk_id_;
}

int BpeModel::control_id(std::string_view piece) const {
  const int id = piece_to_id(piece);
  return type(id) == PieceType::Control ? id : -1;
}

size_t BpeModel::match_user_defined(std::string_view text) const {
  for (const std::string_view piece : user_defined_[static_cast<unsigned char>(text[0])]) {
    if (text.substr(0, piece.size()) == piece) return piece.size();
  }
  return 0;
}

// User-defined pieces pass through whole; an invalid UTF-8 byte becomes U+FFFD.
BpeModel::Prefix BpeModel::normalize_prefix(std::string_view input) const {
  if (const size_t length = match_user_defined(input)) return {input.substr(0, length), length};
  const utf8::CodePoint c = utf8::decode(input, 0);
  if (c.value == utf8::kInvalid) return {kReplacementChar, 1};
  return {input.substr(0, c.length), c.length};
}

std::string BpeModel::normalize(std::string_view input) const {
  const NormalizerSpec& spec = proto_.normalizer_spec;
  const bool remove_extra = spec.remove_extra_whitespaces;
  std::string out;
  if (remove_extra) {
    while (!input.empty()) {
      const Prefix prefix = normalize_prefix(input);
      if (prefix.text != " ") break;
      input.remove_prefix(prefix.consumed);
    }
  }
  // Empty (or, with remove_extra_whitespaces, all-space) text gets no dummy prefix either.
  if (input.empty()) return out;
  out.reserve(input.size() * 3);

  const bool whitespace_as_suffix = proto_.trainer_spec.treat_whitespace_as_suffix;
  if (spec.add_dummy_prefix && !whitespace_as_suffix) out += space_;
  bool previous_was_space = remove_extra;
  while (!input.empty()) {
    const Prefix prefix = normalize_prefix(input);
    std::string_view text = prefix.text;
    while (previous_was_space && !text.empty() && text.front() == ' ') text.remove_prefix(1);
    if (!text.empty()) {
      for (const char c : text) {
        if (c == ' ') {
          out += space_;
        } else {
          out += c;
        }
      }
      previous_was_space = text.back() == ' ';
    }
    input.remove_prefix(prefix.consumed);
    if (!remove_extra) previous_was_space = false;
  }
  if (remove_extra) {
    while (out.size() >= space_.size() &&
           out.compare(out.size() - space_.size(), space_.size(), space_) == 0) {
      out.resize(out.size() - space_.size());
    }
  }
  if (spec.add_dummy_prefix && whitespace_as_suffix) out += space_;
  return out;
}

void BpeModel::segment(std::string_view normalized, Segments& out) const {
  if (!words_independent_) {
    merge(normalized, out);
    return;
  }
  // A word starts at a space symbol that follows another character.
  size_t word_start = 0;
  for (size_t at = normalized.find(space_, 1); at != std::string_view::npos;
       at = normalized.find(space_, at + space_.size())) {
    if (at >= space_.size() && normalized.substr(at - space_.size(), space_.size()) == space_) {
      continue;
    }
    merge(normalized.substr(word_start, at - word_start), out);
    word_start = at;
  }
  merge(normalized.substr(word_start), out);
}

void BpeModel::merge(std::string_view text, Segments& out) const {
  struct Symbol {
    int prev;
    int next;
    bool frozen;  // a user-defined piece, never merged
    std::string_view piece;
  };
  struct Candidate {
    float score;
    int left;
    int right;
    size_t size;  // bytes of the merged piece, which tells a stale candidate apart
  };
  // Highest score first, then leftmost.
  const auto lower = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower)> agenda(lower);
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  // Unused pieces may form during merging but are not emitted: they are split back into the
  // two symbols that last formed them.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unmerge;

  const auto add_candidate = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view merged(symbols[left].piece.data(),
                                  symbols[left].piece.size() + symbols[right].piece.size());
    const auto it = pieces_.find(merged);
    if (it == pieces_.end()) return;
    agenda.push({proto_.pieces[static_cast<size_t>(it->second)].score, left, right, merged.size()});
    if (type(it->second) == PieceType::Unused) {
      unmerge[merged] = {symbols[left].piece, symbols[right].piece};
    }
  };

  for (std::string_view rest = text; !rest.empty();) {
    const size_t user_defined = match_user_defined(rest);
    const size_t length =
        user_defined > 0 ? user_defined : std::min(rest.size(), char_length(rest.front()));
    const int index = static_cast<int>(symbols.size());
    rest.remove_prefix(length);
    symbols.push_back({index - 1, rest.empty() ? -1 : index + 1, user_defined > 0,
                       std::string_view(rest.data() - length, length)});
  }
  if (symbols.empty()) return;
  for (size_t i = 1; i < symbols.size(); ++i) {
    add_candidate(static_cast<int>(i - 1), static_cast<int>(i));
  }

  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    // Either side already merged into something else since this candidate was added.
    if (left.piece.empty() || right.piece.empty() ||
        left.piece.size() + right.piece.size() != top.size) {
      continue;
    }
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.piece = {};
    add_candidate(left.prev, top.left);
    add_candidate(top.left, left.next);
  }

  std::vector<std::string_view> pending;
  for (int index = 0; index >= 0; index = symbols[index].next) {
    pending.push_back(symbols[index].piece);
    while (!pending.empty()) {
      const std::string_view piece = pending.back();
      pending.pop_back();
      const int id = piece_to_id(piece);
      const auto parts = type(id) == PieceType::Unused ? unmerge.find(piece) : unmerge.end();
      if (parts == unmerge.end()) {
        out.emplace_back(piece, id);
      } else {
        pending.push_back(parts->second.second);
        pending.push_back(parts->second.first);
      }
    }
  }
}

void BpeModel::encode(std::string_view text, std::vector<uint32_t>& ids) const {
  const std::string normalized = normalize(text);
  Segments segments;
  segment(normalized, segments);
  bool previous_unknown = false;
  for (const auto& [piece, id] : segments) {
    const bool unknown = type(id) == PieceType::Unknown;
    if (unknown && proto_.trainer_spec.byte_fallback) {
      for (const char byte : piece) {
        ids.push_back(static_cast<uint32_t>(byte_ids_[static_cast<unsigned char>(byte)]));
      }
    } else if (!(unknown && previous_unknown)) {
      // A run of unknown characters is one unknown token.
      ids.push_back(static_cast<uint32_t>(id));
    }
    previous_unknown = unknown;
  }
}

std::string BpeModel::decode(const uint32_t* ids, size_t count) const {
  const NormalizerSpec& spec = proto_.normalizer_spec;
  std::string text;
  // Consecutive byte pieces are joined, then read as UTF-8: each byte that is not part of a
  // valid character becomes U+FFFD.
  std::string bytes;
  const auto flush_bytes = [&] {
    for (size_t pos = 0; pos < bytes.size();) {
      const utf8::CodePoint c = utf8::decode(bytes, pos);
      text.append(c.value == utf8::kInvalid ? kReplacementChar
                                            : std::string_view(bytes).substr(pos, c.length));
      pos += c.length;
    }
    bytes.clear();
  };
  // The space symbol that add_dummy_prefix put in front of the text comes off the first piece
  // that starts with one while nothing has been written yet; with remove_extra_whitespaces,
  // every leading space symbol goes.
  const bool strip_leading_space = spec.add_dummy_prefix || spec.remove_extra_whitespaces;
  bool at_start = true;
  bool stripped_dummy_prefix = false;
  for (size_t i = 0; i < count; ++i) {
    const Piece& piece = proto_.pieces[ids[i]];
    if (piece.type == PieceType::Byte) {
      bytes += static_cast<char>(piece_to_byte(piece.text));
      continue;
    }
    flush_bytes();
    if (stripped_dummy_prefix || !text.empty()) at_start = false;
    stripped_dummy_prefix = false;
    if (piece.type == PieceType::Control) continue;
    if (piece.type == PieceType::Unknown) {
      text += proto_.trainer_spec.unk_surface;
      continue;
    }
    std::string_view surface = piece.text;
    if (at_start && strip_leading_space && surface.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
      surface.remove_prefix(kSpaceSymbol.size());
      stripped_dummy_prefix = !spec.remove_extra_whitespaces;
    }
    append_unescaped(surface, text);
  }
  flush_bytes();
  return text;
}

}  // namespace cr::spm
