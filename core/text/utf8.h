// UTF-8 decoding and the character classes that GPT-2's pre-tokenizer regex uses.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cr::utf8 {

// The classes behind \p{L}, \p{N} and \s; everything else is Other.
enum class CharClass : unsigned char { Letter, Number, Space, Other };

struct CodePoint {
  char32_t value;
  size_t length;  // bytes it occupies in the text
};

// The code point starting at text[pos] (pos < text.size()). A malformed, overlong, surrogate or
// truncated sequence decodes as one byte with value kInvalid, so any byte string can be walked.
CodePoint decode(std::string_view text, size_t pos);
inline constexpr char32_t kInvalid = 0xFFFFFFFF;

// UTF-8 bytes of a valid code point.
std::string encode(char32_t code_point);

// ASCII by table; other code points through a C.UTF-8 locale (the process locale is left alone).
// kInvalid is Other.
CharClass classify(char32_t code_point);

// Whether classify() can tell non-ASCII letters and digits apart from Other on this machine.
bool has_unicode_classes();

}  // namespace cr::utf8
