// Chat messages as the prompt text a model continues. LLaMA-2-style models (a SentencePiece
// tokenizer) get Meta's [INST] format, which encode() completes with BOS in front and "</s><s>"
// between turns; other models get a plain transcript that ends with "Assistant:".
#pragma once

#include <string>
#include <vector>

#include "core/serve/openai_api.h"

namespace cr {

enum class ChatTemplate { Llama2, Plain };

// The messages alternate user and assistant after an optional first system message, ending
// with the user's; ApiError (400) otherwise for Llama2, whose format needs that order.
std::string apply_chat_template(ChatTemplate chat_template, const std::vector<ChatMessage>& messages);

}  // namespace cr
