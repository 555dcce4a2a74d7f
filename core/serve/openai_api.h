// The OpenAI-compatible API as data: request bodies of /v1/completions and /v1/chat/completions
// parsed and checked into typed requests, errors as OpenAI's error objects with their HTTP
// status, and the response and stream-chunk bodies. No sockets: the HTTP server (http_server.h)
// moves these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cr {

// A request the server refuses: its HTTP status and OpenAI's error body.
class ApiError : public std::exception {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string type = "invalid_request_error");
  const char* what() const noexcept override { return message_.c_str(); }
  int status() const { return status_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string message_, param_, type_;
};

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

struct CompletionRequest {
  bool chat = false;
  std::string prompt;                       // completions: the text
  std::optional<std::vector<int64_t>> prompt_tokens;  // completions: token ids instead of text
  std::vector<ChatMessage> messages;        // chat
  int64_t max_tokens = 16;                  // OpenAI's default for completions; chat: to the context's end
  bool max_tokens_given = false;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;                        // 0: all (an extension, as vLLM's)
  std::vector<std::string> stop;            // up to 4 strings
  std::optional<uint64_t> seed;
  int64_t n = 1;
  bool stream = false;
  std::string model;
};

// Parses a body; ApiError (400) names the field that is malformed, unknown or out of range.
CompletionRequest parse_completion_request(const std::string& body, bool chat);

// Why a choice ended, as OpenAI names it: "stop" (a stop string or the end-of-text token) or
// "length" (max_tokens or the context's end).
struct ChoiceText {
  std::string text;
  std::string finish_reason;
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

nlohmann::json completion_response(const CompletionRequest& request, const std::string& id, int64_t created,
                                   const std::string& model, const std::vector<ChoiceText>& choices,
                                   const Usage& usage);
// One server-sent event's JSON: a piece of choice `index`'s text, or its end (finish_reason set).
nlohmann::json completion_chunk(const CompletionRequest& request, const std::string& id, int64_t created,
                                const std::string& model, int64_t index, const std::string& text,
                                const std::optional<std::string>& finish_reason);

}  // namespace cr
