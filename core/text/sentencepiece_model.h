// The contents of a SentencePiece .model file (a serialized sentencepiece.ModelProto) that
// encoding and decoding depend on, with the defaults of sentencepiece_model.proto.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cr::spm {

enum class PieceType : uint8_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct Piece {
  std::string text;
  float score = 0;
  PieceType type = PieceType::Normal;
};

enum class ModelType : int32_t { Unigram = 1, Bpe = 2, Word = 3, Char = 4 };

struct TrainerSpec {
  ModelType model_type = ModelType::Unigram;
  bool treat_whitespace_as_suffix = false;
  bool byte_fallback = false;
  // The control pieces are found by their text, as libsentencepiece's bos_id() etc. do.
  std::string unk_piece = "<unk>";
  std::string bos_piece = "<s>";
  std::string eos_piece = "</s>";
  std::string unk_surface = " \xE2\x81\x87 ";  // what decode() writes for the unknown piece
};

struct NormalizerSpec {
  std::string name;
  std::string precompiled_charsmap;  // empty for the identity normalizer
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

struct ModelProto {
  std::vector<Piece> pieces;  // the index is the token id
  TrainerSpec trainer_spec;
  NormalizerSpec normalizer_spec;
  NormalizerSpec denormalizer_spec;
};

// Parses a serialized ModelProto; `source` (the file path) names it in errors. Fields this
// reader does not know are skipped, as protobuf does.
ModelProto parse_model_proto(std::string_view bytes, const std::string& source);

}  // namespace cr::spm
