// JSON from files users hand over (configs of models, tokenizers, checkpoint manifests, file
// headers): every problem becomes a cr::Error naming the source. Values nested deeper than any
// real file are refused while parsing, since copying or printing them would overflow the stack.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace cr {

constexpr int kMaxJsonDepth = 64;

// "<source>: not valid JSON: ..." or "<source>: JSON nested deeper than 64 levels".
nlohmann::json parse_json(std::string_view text, const std::string& source);

// Reads and parses a whole file; a missing, non-regular (a pipe would block) or unreadable file
// is an error naming it.
nlohmann::json read_json_file(const std::string& path);

}  // namespace cr
