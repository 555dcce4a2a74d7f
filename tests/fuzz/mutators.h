// Deterministic input mutations for the fuzz suite: a seeded generator, byte-level edits of a
// file's contents, and value replacements inside JSON documents and YAML configs. Every
// mutation has a name that, with the seed, is enough to rebuild its input.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cr::fuzz {

// splitmix64: the same sequence on every platform and standard library, unlike the
// distributions of <random>.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

struct Mutation {
  std::string name;
  std::string bytes;
};

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// ---- Bytes ----

// The file cut short, bytes flipped, garbage added: what a crashed writer, a bad disk or a
// wrong file leave behind. Truncations hit the small offsets where headers end, the middle
// and the last byte, plus `random_cuts` seeded ones; `flips` seeded bytes are XORed.
inline std::vector<Mutation> byte_mutations(const std::string& original, Rng& rng, int random_cuts, int flips) {
  std::vector<Mutation> out;
  out.push_back({"empty file", ""});
  const size_t size = original.size();
  std::vector<size_t> cuts = {1, 2, 4, 7, 8, 9, 12, 16, 64, size / 4, size / 2, size - 1};
  for (int i = 0; i < random_cuts; ++i) cuts.push_back(rng.below(size));
  for (const size_t cut : cuts) {
    if (cut < size) out.push_back({"truncated to " + std::to_string(cut) + " bytes", original.substr(0, cut)});
  }
  for (int i = 0; i < flips && size > 0; ++i) {
    const size_t at = rng.below(size);
    const auto mask = static_cast<unsigned char>(1 + rng.below(255));
    std::string bytes = original;
    bytes[at] = static_cast<char>(static_cast<unsigned char>(bytes[at]) ^ mask);
    out.push_back({"byte " + std::to_string(at) + " xor " + std::to_string(mask), bytes});
  }
  out.push_back({"4 KiB of 0xFF appended", original + std::string(4096, '\xFF')});
  out.push_back({"NUL bytes in the middle", original.substr(0, size / 2) + std::string(16, '\0') + original.substr(size / 2)});
  std::string noise(size, '\0');
  for (char& c : noise) c = static_cast<char>(rng.next());
  out.push_back({"same-size random bytes", noise});
  return out;
}

// Little-endian integers written over a file's bytes (headers with lengths and counts).
inline std::string with_le(std::string bytes, size_t offset, uint64_t value, size_t width) {
  for (size_t i = 0; i < width && offset + i < bytes.size(); ++i) {
    bytes[offset + i] = static_cast<char>(value >> (8 * i));
  }
  return bytes;
}

// Integers at the edges of the types a header field is read into.
inline const std::vector<std::pair<std::string, uint64_t>>& edge_integers() {
  static const std::vector<std::pair<std::string, uint64_t>> values = {
      {"0", 0},
      {"1", 1},
      {"-1", ~uint64_t{0}},
      {"2^31 - 1", 0x7FFFFFFFull},
      {"2^31", 0x80000000ull},
      {"2^32 - 1", 0xFFFFFFFFull},
      {"2^32 + 1", 0x100000001ull},
      {"2^63 - 1", 0x7FFFFFFFFFFFFFFFull},
      {"-2^63", 0x8000000000000000ull},
      {"2^40", uint64_t{1} << 40},
  };
  return values;
}

// ---- JSON ----

// Raw JSON text put in place of one value: other types, integers at the edges of int32, int64
// and uint64, numbers a double cannot hold, spellings JSON does not allow, path-like, long and
// deeply nested values. Raw text, not nlohmann values, so that invalid JSON can be written too.
inline const std::vector<std::pair<std::string, std::string>>& json_replacements() {
  static const std::vector<std::pair<std::string, std::string>> values = {
      {"null", "null"},
      {"true", "true"},
      {"0", "0"},
      {"-1", "-1"},
      {"1.5", "1.5"},
      {"2^31", "2147483648"},
      {"2^32 + 1", "4294967297"},
      {"2^63 - 1", "9223372036854775807"},
      {"-2^63", "-9223372036854775808"},
      {"2^64 - 1", "18446744073709551615"},
      {"2^64", "18446744073709551616"},
      {"1e308", "1e308"},
      {"1e999", "1e999"},
      {"-1e999", "-1e999"},
      {"NaN", "NaN"},
      {"empty string", "\"\""},
      {"string", "\"x\""},
      {"number as string", "\"5\""},
      {"parent path", "\"../model.safetensors\""},
      {"absolute path", "\"/etc/passwd\""},
      {"control bytes", "\"a\\u0000b\\u0001\""},
      {"invalid UTF-8", "\"\xFF\xFE\""},
      {"empty list", "[]"},
      {"empty object", "{}"},
      {"list of strings", "[\"a\", \"b\"]"},
      {"long string", "\"" + std::string(100000, 'a') + "\""},
      {"100k nested lists", std::string(100000, '[') + std::string(100000, ']')},
      {"unclosed string", "\"abc"},
  };
  return values;
}

// A key as one JSON pointer token (RFC 6901: "~" is "~0", "/" is "~1").
inline std::string pointer_token(const std::string& key) {
  std::string out;
  for (const char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// Every value in the document as a JSON pointer, the root first, depth-first.
inline void collect_pointers(const nlohmann::json& value, const std::string& at, std::vector<std::string>& out) {
  out.push_back(at);
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      collect_pointers(child, at + "/" + pointer_token(key), out);
    }
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) collect_pointers(value[i], at + "/" + std::to_string(i), out);
  }
}

inline std::vector<std::string> json_pointers(const nlohmann::json& doc) {
  std::vector<std::string> out;
  collect_pointers(doc, "", out);
  return out;
}

// Every value that sits in a small container (the document's structure), and `count` seeded
// picks among the members of large ones (a vocabulary's hundreds of similar entries).
inline std::vector<std::string> sampled_pointers(const nlohmann::json& doc, size_t count, Rng& rng) {
  constexpr size_t kSmall = 16;
  std::vector<std::string> out;
  std::vector<std::string> crowded;
  for (const auto& pointer : json_pointers(doc)) {
    const bool small = pointer.empty() ||
                       doc[nlohmann::json::json_pointer(pointer).parent_pointer()].size() <= kSmall;
    (small ? out : crowded).push_back(pointer);
  }
  for (size_t picked = 0; picked < count && !crowded.empty(); ++picked) {
    const size_t i = rng.below(crowded.size());
    out.push_back(crowded[i]);
    crowded.erase(crowded.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return out;
}

// `doc` as text with the value at `pointer` replaced by the raw text `raw`.
inline std::string json_with_raw(nlohmann::json doc, const std::string& pointer, const std::string& raw) {
  static const std::string kPlaceholder = "@@fuzz-value@@";
  doc[nlohmann::json::json_pointer(pointer)] = kPlaceholder;
  std::string text = doc.dump(1);
  text.replace(text.find("\"" + kPlaceholder + "\""), kPlaceholder.size() + 2, raw);
  return text;
}

// `doc` as text without the value at `pointer` (not the root).
inline std::string json_without(nlohmann::json doc, const std::string& pointer) {
  const nlohmann::json::json_pointer at(pointer);
  auto& parent = doc[at.parent_pointer()];
  if (parent.is_object()) {
    parent.erase(at.back());
  } else {
    parent.erase(static_cast<size_t>(std::stoull(at.back())));
  }
  return doc.dump(1);
}

// Every replacement at each of `pointers`, and each non-root value removed.
inline std::vector<Mutation> json_mutations(const nlohmann::json& doc, const std::vector<std::string>& pointers) {
  std::vector<Mutation> out;
  for (const auto& pointer : pointers) {
    const std::string where = pointer.empty() ? "(root)" : pointer;
    for (const auto& [name, raw] : json_replacements()) {
      out.push_back({where + " = " + name, json_with_raw(doc, pointer, raw)});
    }
    if (!pointer.empty()) out.push_back({where + " removed", json_without(doc, pointer)});
  }
  return out;
}

// Text-level damage to a JSON document: cut short, a second document, a duplicated key, a
// comment, a byte-order mark, nothing at all.
inline std::vector<Mutation> json_text_mutations(const std::string& text, Rng& rng) {
  std::vector<Mutation> out = byte_mutations(text, rng, 4, 8);
  out.push_back({"two documents", text + "\n" + text});
  out.push_back({"trailing comma", text.substr(0, text.rfind('}')) + ",}"});
  out.push_back({"comment", "// note\n" + text});
  out.push_back({"byte-order mark", "\xEF\xBB\xBF" + text});
  out.push_back({"whitespace only", " \n\t "});
  if (const size_t brace = text.find('{'); brace != std::string::npos) {
    const size_t end = text.find_first_of(",}", brace);
    out.push_back({"first key duplicated", text.substr(0, end) + "," + text.substr(brace + 1)});
  }
  return out;
}

// ---- YAML ----

// YAML text put in place of one config value: other types, tags, quoted numbers, integers at
// the edges of int32 / int64, non-finite numbers, empty and binary strings, long and deeply
// nested values, and text that is no valid YAML at all.
inline const std::vector<std::pair<std::string, std::string>>& yaml_replacements() {
  static const std::vector<std::pair<std::string, std::string>> values = {
      {"empty", ""},
      {"null", "null"},
      {"tilde", "~"},
      {"true", "true"},
      {"list", "[1, 2]"},
      {"empty list", "[]"},
      {"list of lists", "[[1], [2]]"},
      {"mapping", "{a: 1}"},
      {"quoted number", "\"5\""},
      {"tag !!str", "!!str 5"},
      {"tag !!int", "!!int 5"},
      {"tag !!float", "!!float 0.5"},
      {"tag !!bool", "!!bool true"},
      {"custom tag", "!custom 5"},
      {"anchor", "&a 3"},
      {"unknown alias", "*nowhere"},
      {"0", "0"},
      {"-1", "-1"},
      {"0.5", "0.5"},
      {"2^31", "2147483648"},
      {"2^32 + 1", "4294967297"},
      {"2^63 - 1", "9223372036854775807"},
      {"-2^63", "-9223372036854775808"},
      {"2^63", "9223372036854775808"},
      {"huge", "1e308"},
      {"1e999", "1e999"},
      {"-huge", "-1e308"},
      {"tiny", "4.9e-324"},
      {".nan", ".nan"},
      {".inf", ".inf"},
      {"-.inf", "-.inf"},
      {"hex", "0x10"},
      {"octal", "0o17"},
      {"empty quoted", "''"},
      {"control bytes", "\"a\\x01\\x02b\""},
      {"raw control byte", "a\x01z"},
      {"invalid UTF-8", "\xFF\xFE\xFD"},
      {"quoted invalid UTF-8", "\"\xC3\x28\""},
      {"NUL escape", "\"a\\0b\""},
      {"unclosed double quote", "\"abc"},
      {"unclosed single quote", "'abc"},
      {"long string", std::string(100000, 'a')},
      {"10k nested lists", std::string(10000, '[') + std::string(10000, ']')},
      {"10k nested mappings", [] {
         std::string text;
         for (int i = 0; i < 10000; ++i) text += "{a: ";
         return text + "1" + std::string(10000, '}');
       }()},
      {"reserved indicator", "@x"},
      {"stray colon", "a: b: c"},
      {"block scalar", "|\n    two\n    lines"},
  };
  return values;
}

}  // namespace cr::fuzz
