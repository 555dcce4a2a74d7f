#include "core/serve/completion_text.h"

#include <algorithm>

namespace cr {
namespace {

// Bytes at the end of `text` that start a UTF-8 character whose other bytes have not come yet.
size_t unfinished_character(const std::string& text) {
  for (size_t back = 1; back <= std::min<size_t>(3, text.size()); ++back) {
    const auto byte = static_cast<unsigned char>(text[text.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
    return length > back ? back : 0;
  }
  return 0;
}

}  // namespace

CompletionText::CompletionText(const Tokenizer& tokenizer, std::vector<std::string> stops, int64_t end_token)
    : tokenizer_(tokenizer), stops_(std::move(stops)), end_token_(end_token) {}

std::string CompletionText::advance(const std::vector<int64_t>& tokens, bool final) {
  if (stopped_) return "";
  std::vector<uint32_t> ids;
  for (int64_t token : tokens) {
    if (token != end_token_) ids.push_back(static_cast<uint32_t>(token));
  }
  std::string text = tokenizer_.decode(ids);
  size_t cut = text.size();
  for (const std::string& stop : stops_) {
    const size_t found = text.find(stop, sent_.size() > stop.size() ? sent_.size() - stop.size() : 0);
    if (found != std::string::npos && found < cut) {
      cut = found;
      stopped_ = true;
    }
  }
  size_t ready = cut;
  if (!stopped_ && !final) {
    ready -= unfinished_character(text.substr(0, cut));
    // Hold back a tail that a stop string could start with.
    for (const std::string& stop : stops_) {
      for (size_t length = std::min(stop.size() - 1, ready); length > 0; --length) {
        if (text.compare(ready - length, length, stop, 0, length) == 0) {
          ready -= length;
          break;
        }
      }
    }
  }
  // Text already sent never changes: a later decode that disagrees with it keeps what was sent.
  if (ready <= sent_.size() || text.compare(0, sent_.size(), sent_) != 0) return "";
  std::string fresh = text.substr(sent_.size(), ready - sent_.size());
  sent_ += fresh;
  return fresh;
}

}  // namespace cr
