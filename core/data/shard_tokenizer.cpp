#include "core/data/shard_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/base/json.h"
#include "core/data/dataset.h"

namespace cr {

void write_shard_tokenizer(const std::string& output_prefix, const ShardTokenizer& tokenizer) {
  const std::string path = output_prefix + "_tokenizer.json";
  nlohmann::json record = {
      {"tokenizer", tokenizer.kind}, {"tokenizer_dir", nullptr}, {"vocab_size", tokenizer.vocab_size}};
  if (tokenizer.dir) record["tokenizer_dir"] = std::filesystem::absolute(*tokenizer.dir).lexically_normal().string();
  std::ofstream out(path, std::ios::trunc);
  out << record.dump(2) << "\n";
  out.close();
  if (!out) fail("{}: cannot write the shards' tokenizer record", path);
}

std::optional<ShardTokenizer> find_shard_tokenizer(const std::vector<std::string>& train) {
  if (train.empty()) return std::nullopt;
  const std::vector<std::string> files = expand_paths({train.front()}, "data.train");
  static const std::regex shard_name(R"((.*)_(train|val)_\d{6}\.bin)");
  std::smatch match;
  if (files.empty() || !std::regex_match(files.front(), match, shard_name)) return std::nullopt;
  const std::string path = match[1].str() + "_tokenizer.json";
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return std::nullopt;
  const nlohmann::json record = read_json_file(path);
  if (!record.is_object() || !record.contains("tokenizer") || !record["tokenizer"].is_string()) {
    fail("{}: not a tokenizer record (an object with \"tokenizer\")", path);
  }
  ShardTokenizer found;
  found.kind = record["tokenizer"].get<std::string>();
  if (record.contains("tokenizer_dir") && record["tokenizer_dir"].is_string()) {
    found.dir = record["tokenizer_dir"].get<std::string>();
  }
  found.vocab_size = record.value("vocab_size", int64_t{0});
  found.path = path;
  return found;
}

std::string adopt_shard_tokenizer(DataConfig& data) {
  if (data.format != "tokens") return "";
  const std::optional<ShardTokenizer> shards = find_shard_tokenizer(data.train);
  if (!shards) return "";
  const bool names_none = data.tokenizer == "byte" && !data.tokenizer_dir;
  if (names_none && shards->kind != "byte") {
    data.tokenizer = shards->kind;
    data.tokenizer_dir = shards->dir;
    return fmt::format("data.tokenizer {}{} from {}, the record prepare wrote with the shards", shards->kind,
                       shards->dir ? " (data.tokenizer_dir " + *shards->dir + ")" : "", shards->path);
  }
  if (data.tokenizer != shards->kind) {
    fail("data.tokenizer is {} but {} says the shards were made with the {} tokenizer; set data.tokenizer: {} (or "
         "leave it out)",
         data.tokenizer, shards->path, shards->kind, shards->kind);
  }
  return "";
}

}  // namespace cr
