// SentencePiece's BPE model: encodes and decodes token ids the way libsentencepiece (0.1.97)
// does for a model of model_type BPE, without linking it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/text/sentencepiece_model.h"

namespace cr::spm {

class BpeModel {
 public:
  // Checks the model as libsentencepiece's loader does, and rejects what this class does not
  // implement (other model types, normalization rules). Errors name `source`.
  BpeModel(ModelProto proto, const std::string& source);
  // The lookup tables point into the pieces.
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `text`; no BOS or EOS is added.
  void encode(std::string_view text, std::vector<uint32_t>& ids) const;
  // The text of ids[0, count), each below size(). Control pieces produce no text.
  std::string decode(const uint32_t* ids, size_t count) const;

  size_t size() const { return proto_.pieces.size(); }
  // The ids of the control pieces named by the trainer spec, or -1 where there is none.
  int bos_id() const { return control_id(proto_.trainer_spec.bos_piece); }
  int eos_id() const { return control_id(proto_.trainer_spec.eos_piece); }

 private:
  struct Prefix {
    std::string_view text;  // what the prefix normalizes to
    size_t consumed;        // input bytes it covers
  };

  PieceType type(int id) const { return proto_.pieces[static_cast<size_t>(id)].type; }
  int piece_to_id(std::string_view piece) const;
  int control_id(std::string_view piece) const;
  // Length of the longest user-defined piece that `text` starts with, 0 if none.
  size_t match_user_defined(std::string_view text) const;
  Prefix normalize_prefix(std::string_view input) const;
  std::string normalize(std::string_view input) const;
  using Segments = std::vector<std::pair<std::string_view, int>>;
  // Appends the normalized text as (piece, id) pairs, after merging.
  void segment(std::string_view normalized, Segments& out) const;
  // BPE merging of one span, the whole text or one word.
  void merge(std::string_view text, Segments& out) const;

  ModelProto proto_;
  // Normal, user-defined and unused pieces take part in merges; control, unknown and byte
  // pieces are only found by id lookups, which try them first.
  std::unordered_map<std::string_view, int> pieces_;
  std::unordered_map<std::string_view, int> reserved_;
  int unk_id_ = -1;
  std::array<int, 256> byte_ids_{};
  // User-defined pieces by first byte, longest first.
  std::array<std::vector<std::string_view>, 256> user_defined_;
  // The space symbol as it appears in normalized text.
  std::string_view space_;
  // Whether words (runs that start where a space symbol follows another character) can be
  // merged one at a time with the same result as merging the whole text, which is faster.
  bool words_independent_ = false;
};

}  // namespace cr::spm
