// Small string utilities used for user-facing messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cr {

bool starts_with(const std::string& text, const std::string& prefix);
bool ends_with(const std::string& text, const std::string& suffix);

// Levenshtein edit distance between two strings.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word` by edit distance; empty when candidates is empty.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// A user's value quoted in a message: at most `limit` bytes, cut in the middle with the
// full length said, so that a megabyte value cannot make a megabyte message.
std::string shortened(const std::string& text, size_t limit = 200);

// "1,234,567"
std::string with_thousands(long long value);

// "1.50 GiB", "12.0 MiB", "512 B"
std::string human_bytes(double bytes);

// "5GB", "500MiB", "141e9" as bytes (SI and binary units); cr::Error naming `option` otherwise.
int64_t parse_byte_size(const std::string& text, const std::string& option);

}  // namespace cr
