// Field numbers are those of sentencepiece_model.proto. A message field that occurs more than
// once is merged into what came before, and a scalar's last occurrence wins, as in protobuf.
#include "core/text/sentencepiece_model.h"

#include "core/text/protobuf_wire.h"

namespace cr::spm {
namespace {

using protobuf::WireReader;

// proto2 keeps an enum value it does not know out of the field, which keeps its old value.
template <typename Enum>
void read_enum(WireReader& reader, Enum& out, int32_t min, int32_t max) {
  const int32_t value = reader.int32();
  if (value >= min && value <= max) out = static_cast<Enum>(value);
}

Piece read_piece(WireReader reader) {
  Piece piece;
  while (reader.next()) {
    switch (reader.field()) {
      case 1: piece.text = std::string(reader.bytes()); break;
      case 2: piece.score = reader.float32(); break;
      case 3: read_enum(reader, piece.type, 1, 6); break;
      default: reader.skip();
    }
  }
  return piece;
}

void read_trainer_spec(WireReader reader, TrainerSpec& spec) {
  while (reader.next()) {
    switch (reader.field()) {
      case 3: read_enum(reader, spec.model_type, 1, 4); break;
      case 24: spec.treat_whitespace_as_suffix = reader.boolean(); break;
      case 35: spec.byte_fallback = reader.boolean(); break;
      case 44: spec.unk_surface = std::string(reader.bytes()); break;
      case 45: spec.unk_piece = std::string(reader.bytes()); break;
      case 46: spec.bos_piece = std::string(reader.bytes()); break;
      case 47: spec.eos_piece = std::string(reader.bytes()); break;
      default: reader.skip();
    }
  }
}

void read_normalizer_spec(WireReader reader, NormalizerSpec& spec) {
  while (reader.next()) {
    switch (reader.field()) {
      case 1: spec.name = std::string(reader.bytes()); break;
      case 2: spec.precompiled_charsmap = std::string(reader.bytes()); break;
      case 3: spec.add_dummy_prefix = reader.boolean(); break;
      case 4: spec.remove_extra_whitespaces = reader.boolean(); break;
      case 5: spec.escape_whitespaces = reader.boolean(); break;
      default: reader.skip();
    }
  }
}

}  // namespace

ModelProto parse_model_proto(std::string_view bytes, const std::string& source) {
  ModelProto model;
  WireReader reader(bytes, "SentencePiece model " + source);
  while (reader.next()) {
    switch (reader.field()) {
      case 1: model.pieces.push_back(read_piece(reader.message())); break;
      case 2: read_trainer_spec(reader.message(), model.trainer_spec); break;
      case 3: read_normalizer_spec(reader.message(), model.normalizer_spec); break;
      case 5: read_normalizer_spec(reader.message(), model.denormalizer_spec); break;
      default: reader.skip();
    }
  }
  return model;
}

}  // namespace cr::spm
