#include "core/serve/openai_api.h"

#include <cmath>
#include <set>

#include <fmt/format.h>

namespace cr {

ApiError::ApiError(int status, std::string message, std::string param, std::string type)
    : status_(status), message_(std::move(message)), param_(std::move(param)), type_(std::move(type)) {}

nlohmann::json ApiError::body() const {
  return {{"error",
           {{"message", message_},
            {"type", type_},
            {"param", param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_)},
            {"code", nullptr}}}};
}

namespace {

using nlohmann::json;

ApiError bad(const std::string& param, const std::string& message) { return ApiError(400, message, param); }

double number_in(const json& value, const std::string& name, double min, double max) {
  if (!value.is_number()) throw bad(name, fmt::format("'{}' must be a number, got {}", name, value.dump()));
  const double x = value.get<double>();
  if (!(x >= min && x <= max)) throw bad(name, fmt::format("'{}' is {}; it must be in [{}, {}]", name, x, min, max));
  return x;
}

int64_t integer_in(const json& value, const std::string& name, int64_t min, int64_t max) {
  if (!value.is_number_integer()) throw bad(name, fmt::format("'{}' must be an integer, got {}", name, value.dump()));
  const auto x = value.get<int64_t>();
  if (x < min || x > max) throw bad(name, fmt::format("'{}' is {}; it must be in [{}, {}]", name, x, min, max));
  return x;
}

std::string string_of(const json& value, const std::string& name) {
  if (!value.is_string()) throw bad(name, fmt::format("'{}' must be a string, got {}", name, value.dump()));
  return value.get<std::string>();
}

std::vector<std::string> stop_strings(const json& value) {
  if (value.is_null()) return {};
  if (value.is_string()) return {value.get<std::string>()};
  if (!value.is_array() || value.size() > 4) throw bad("stop", "'stop' must be a string or a list of up to 4 strings");
  std::vector<std::string> stops;
  for (const auto& item : value) {
    const std::string stop = string_of(item, "stop");
    if (stop.empty()) throw bad("stop", "'stop' strings may not be empty");
    stops.push_back(stop);
  }
  return stops;
}

std::vector<ChatMessage> chat_messages(const json& value) {
  if (!value.is_array() || value.empty()) throw bad("messages", "'messages' must be a non-empty list");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string where = fmt::format("messages[{}]", i);
    const json& item = value[i];
    if (!item.is_object() || !item.contains("role") || !item.contains("content")) {
      throw bad(where, fmt::format("'{}' must be an object with 'role' and 'content'", where));
    }
    ChatMessage message{string_of(item["role"], where + ".role"), string_of(item["content"], where + ".content")};
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      throw bad(where + ".role", fmt::format("'{}.role' is '{}'; it must be system, user or assistant", where,
                                             message.role));
    }
    messages.push_back(std::move(message));
  }
  if (messages.back().role != "user") throw bad("messages", "the last message must be the user's");
  return messages;
}

// Fields OpenAI defines that this server reads, or accepts at their neutral value.
const std::set<std::string> kCommonFields = {"model", "max_tokens", "temperature", "top_p", "top_k", "stop",
                                             "seed", "n", "stream", "user", "presence_penalty",
                                             "frequency_penalty", "logprobs"};

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, bool chat) {
  json root;
  try {
    root = json::parse(body);
  } catch (const json::parse_error& e) {
    throw bad("", fmt::format("the body is not valid JSON: {}", e.what()));
  }
  if (!root.is_object()) throw bad("", "the body must be a JSON object");
  CompletionRequest request;
  request.chat = chat;
  for (const auto& [key, value] : root.items()) {
    const bool own = chat ? key == "messages" : (key == "prompt" || key == "echo");
    if (!own && !kCommonFields.count(key)) throw bad(key, fmt::format("unknown field '{}'", key));
  }
  if (chat) {
    if (!root.contains("messages")) throw bad("messages", "'messages' is required");
    request.messages = chat_messages(root["messages"]);
  } else {
    if (!root.contains("prompt")) throw bad("prompt", "'prompt' is required");
    const json& prompt = root["prompt"];
    if (prompt.is_string()) {
      request.prompt = prompt.get<std::string>();
    } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
      request.prompt_tokens.emplace();
      for (const auto& id : prompt) request.prompt_tokens->push_back(integer_in(id, "prompt", 0, INT32_MAX));
    } else {
      throw bad("prompt", "'prompt' must be a string or a list of token ids (one prompt per request)");
    }
    if (root.contains("echo") && root["echo"] != false) throw bad("echo", "'echo' is not supported");
  }
  if (root.contains("model") && !root["model"].is_null()) request.model = string_of(root["model"], "model");
  if (root.contains("max_tokens") && !root["max_tokens"].is_null()) {
    request.max_tokens = integer_in(root["max_tokens"], "max_tokens", 1, INT32_MAX);
    request.max_tokens_given = true;
  }
  if (root.contains("temperature")) request.temperature = number_in(root["temperature"], "temperature", 0, 2);
  if (root.contains("top_p")) request.top_p = number_in(root["top_p"], "top_p", 0, 1);
  if (request.top_p == 0) throw bad("top_p", "'top_p' must be greater than 0");
  if (root.contains("top_k")) {
    const int64_t top_k = integer_in(root["top_k"], "top_k", -1, INT32_MAX);
    request.top_k = top_k < 0 ? 0 : top_k;  // -1: all, as vLLM
  }
  if (root.contains("stop")) request.stop = stop_strings(root["stop"]);
  if (root.contains("seed") && !root["seed"].is_null()) {
    request.seed = static_cast<uint64_t>(integer_in(root["seed"], "seed", 0, INT64_MAX));
  }
  if (root.contains("n")) request.n = integer_in(root["n"], "n", 1, 16);
  if (root.contains("stream")) {
    if (!root["stream"].is_boolean()) throw bad("stream", "'stream' must be true or false");
    request.stream = root["stream"].get<bool>();
  }
  for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
    if (root.contains(penalty) && number_in(root[penalty], penalty, -2, 2) != 0) {
      throw bad(penalty, fmt::format("'{}' other than 0 is not supported", penalty));
    }
  }
  if (root.contains("logprobs") && !root["logprobs"].is_null() && root["logprobs"] != false) {
    throw bad("logprobs", "'logprobs' is not supported");
  }
  return request;
}

nlohmann::json completion_response(const CompletionRequest& request, const std::string& id, int64_t created,
                                   const std::string& model, const std::vector<ChoiceText>& choices,
                                   const Usage& usage) {
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    json choice = {{"index", i}, {"finish_reason", choices[i].finish_reason}};
    if (request.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", choices[i].text}};
    } else {
      choice["text"] = choices[i].text;
      choice["logprobs"] = nullptr;
    }
    list.push_back(std::move(choice));
  }
  return {{"id", id},
          {"object", request.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", std::move(list)},
          {"usage",
           {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}};
}

nlohmann::json completion_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                                const std::string& model, int64_t index, const std::string& text,
                                const std::optional<std::string>& finish_reason) {
  json choice = {{"index", index}, {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}};
  if (request.chat) {
    choice["delta"] = finish_reason ? json::object() : json{{"content", text}};
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  return {{"id", id},
          {"object", request.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({std::move(choice)})}};
}

}  // namespace cr
