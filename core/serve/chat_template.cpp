#include "core/serve/chat_template.h"

#include <fmt/format.h>

namespace cr {
namespace {

std::string llama2(const std::vector<ChatMessage>& messages) {
  size_t first = 0;
  std::string system;
  if (messages.front().role == "system") {
    system = "<<SYS>>\n" + messages.front().content + "\n<</SYS>>\n\n";
    first = 1;
  }
  std::string text;
  for (size_t i = first; i < messages.size(); ++i) {
    const bool user_turn = (i - first) % 2 == 0;
    const std::string& role = messages[i].role;
    if (role != (user_turn ? "user" : "assistant")) {
      throw ApiError(400,
                     fmt::format("messages[{}] is the {}'s; after an optional system message the LLaMA-2 chat format "
                                 "alternates user and assistant, starting with the user",
                                 i, role),
                     fmt::format("messages[{}].role", i));
    }
    if (user_turn) {
      if (i > first) text += "<s>";
      text += "[INST] " + (i == first ? system : "") + messages[i].content + " [/INST]";
    } else {
      text += " " + messages[i].content + " </s>";
    }
  }
  return text;
}

std::string plain(const std::vector<ChatMessage>& messages) {
  std::string text;
  for (const ChatMessage& message : messages) {
    if (message.role == "system") {
      text += message.content + "\n\n";
    } else {
      text += (message.role == "user" ? "User: " : "Assistant: ") + message.content + "\n";
    }
  }
  return text + "Assistant:";
}

}  // namespace

std::string apply_chat_template(ChatTemplate chat_template, const std::vector<ChatMessage>& messages) {
  return chat_template == ChatTemplate::Llama2 ? llama2(messages) : plain(messages);
}

}  // namespace cr
