// A choice's tokens as the text a client receives, while they come: the whole sequence is decoded
// each time (a byte-level piece may hold part of a character), text that may still change is
// held back (an unfinished UTF-8 character, a tail that could begin a stop string), and the text
// ends before the first stop string.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/text/tokenizer.h"

namespace cr {

class CompletionText {
 public:
  // `end_token`: the end-of-text id, which ends a choice without being part of its text.
  CompletionText(const Tokenizer& tokenizer, std::vector<std::string> stops, int64_t end_token);

  // The text that can be sent now, given all of the choice's tokens so far; `final`: no more
  // tokens will come, so nothing is held back.
  std::string advance(const std::vector<int64_t>& tokens, bool final);
  bool stopped() const { return stopped_; }  // a stop string appeared: the choice is complete
  const std::string& sent() const { return sent_; }

 private:
  const Tokenizer& tokenizer_;
  std::vector<std::string> stops_;
  int64_t end_token_;
  std::string sent_;
  bool stopped_ = false;
};

}  // namespace cr
