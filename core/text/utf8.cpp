#include "core/text/utf8.h"

#include <locale.h>
#include <wctype.h>

namespace cr::utf8 {
namespace {

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// Created once and never freed: the *_l classification functions are thread-safe on it.
locale_t utf8_locale() {
  static const locale_t locale = [] {
    locale_t found = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
    if (!found) found = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", locale_t{});
    return found;
  }();
  return locale;
}

// Unicode White_Space, which is what \s means in GPT-2's regex. glibc's iswspace leaves out the
// no-break spaces and U+0085, so the list is spelled out.
bool is_white_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

CharClass classify_ascii(char32_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::Letter;
  if (c >= '0' && c <= '9') return CharClass::Number;
  if (is_white_space(c)) return CharClass::Space;
  return CharClass::Other;
}

}  // namespace

CodePoint decode(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {lead, 1};

  size_t length;
  char32_t value;
  // Bounds on the second byte rule out overlong forms, surrogates and values above U+10FFFF.
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    value = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    value = lead & 0x0F;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    value = lead & 0x07;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  } else {
    return {kInvalid, 1};
  }
  if (pos + length > text.size() || byte(1) < second_min || byte(1) > second_max) {
    return {kInvalid, 1};
  }
  for (size_t i = 1; i < length; ++i) {
    if (!is_continuation(byte(i))) return {kInvalid, 1};
    value = (value << 6) | (byte(i) & 0x3F);
  }
  return {value, length};
}

std::string encode(char32_t c) {
  std::string out;
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
  return out;
}

CharClass classify(char32_t c) {
  if (c < 0x80) return classify_ascii(c);
  if (c == kInvalid) return CharClass::Other;
  if (is_white_space(c)) return CharClass::Space;
  const locale_t locale = utf8_locale();
  if (!locale) return CharClass::Other;
  const auto wide = static_cast<wint_t>(c);
  if (iswalpha_l(wide, locale)) return CharClass::Letter;
  if (iswdigit_l(wide, locale)) return CharClass::Number;
  return CharClass::Other;
}

bool has_unicode_classes() { return utf8_locale() != locale_t{}; }

}  // namespace cr::utf8
