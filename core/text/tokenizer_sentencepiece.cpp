// The LLaMA tokenizer: a SentencePiece BPE model (tokenizer.model). It is read and run natively:
// libsentencepiece carries its own protobuf runtime, which cannot share a process with
// LibTorch's libprotobuf.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/base/error.h"
#include "core/text/sentencepiece_bpe.h"
#include "core/text/sentencepiece_model.h"
#include "core/text/tokenizer.h"

namespace cr {
namespace {

namespace fs = std::filesystem;

// The model's own spellings of its control symbols, honoured in text only with allow_special.
constexpr std::string_view kBosText = "<s>";
constexpr std::string_view kEosText = "</s>";

// Names a directory may hold the model under: the usual one, then the one in shared/data.
constexpr const char* kModelNames[] = {"tokenizer.model", "llama2-tokenizer.model"};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const fs::path& model)
      : model_(spm::parse_model_proto(read_model_file(model), model.string()), model.string()),
        file_(model.filename().string()) {
    // Every document starts with BOS and eot_id() must name a real token, so a model that
    // disabled either (id -1) cannot serve here.
    if (model_.bos_id() < 0 || model_.eos_id() < 0) {
      fail("SentencePiece model {} has no <s>/</s> ids (bos {}, eos {})", model.string(),
           model_.bos_id(), model_.eos_id());
    }
    bos_ = static_cast<uint32_t>(model_.bos_id());
    eos_ = static_cast<uint32_t>(model_.eos_id());
  }

  // BOS first, as LLaMA saw every document in training.
  std::vector<uint32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<uint32_t> ids{bos_};
    if (!allow_special) {
      model_.encode(text, ids);
      return ids;
    }
    for (;;) {
      const size_t bos_at = text.find(kBosText);
      const size_t eos_at = text.find(kEosText);
      const size_t at = std::min(bos_at, eos_at);
      model_.encode(text.substr(0, at), ids);
      if (at == std::string_view::npos) return ids;
      const bool is_bos = at == bos_at;
      ids.push_back(is_bos ? bos_ : eos_);
      text.remove_prefix(at + (is_bos ? kBosText : kEosText).size());
    }
  }

  // BOS/EOS produce no text. The runs between them are decoded one by one, so that each run
  // drops its own leading dummy-prefix space the way it was added when it was encoded: the
  // decode of concatenated documents is the concatenation of the documents.
  std::string decode(const std::vector<uint32_t>& ids) const override {
    for (const uint32_t id : ids) {
      if (id >= vocab_size()) {
        fail("{}: token id {} is outside the vocabulary (size {})", name(), id, vocab_size());
      }
    }
    std::string text;
    size_t run_start = 0;
    for (size_t i = 0; i <= ids.size(); ++i) {
      if (i < ids.size() && ids[i] != bos_ && ids[i] != eos_) continue;
      text += model_.decode(ids.data() + run_start, i - run_start);
      run_start = i + 1;
    }
    return text;
  }

  uint32_t vocab_size() const override { return static_cast<uint32_t>(model_.size()); }
  uint32_t eot_id() const override { return eos_; }
  std::string name() const override { return "sentencepiece:" + file_; }

 private:
  static std::string read_model_file(const fs::path& path) {
    std::error_code ec;
    // A pipe would block for ever.
    if (fs::exists(path, ec) && !fs::is_regular_file(path, ec)) {
      fail("cannot load SentencePiece model {}: not a regular file", path.string());
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot load SentencePiece model {}: {}", path.string(), std::strerror(errno));
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (in.bad()) fail("cannot load SentencePiece model {}: read error", path.string());
    return bytes.str();
  }

  spm::BpeModel model_;
  std::string file_;
  uint32_t bos_ = 0;
  uint32_t eos_ = 0;
};

fs::path find_model(const std::string& path_or_dir) {
  const fs::path path(path_or_dir);
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return path;  // a missing file is reported by the loader
  for (const char* name : kModelNames) {
    if (fs::is_regular_file(path / name, ec)) return path / name;
  }
  fail("no SentencePiece model in {}: looked for {} and {}", path_or_dir, kModelNames[0],
       kModelNames[1]);
}

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path_or_dir) {
  return std::make_unique<SentencePieceTokenizer>(find_model(path_or_dir));
}

}  // namespace cr
