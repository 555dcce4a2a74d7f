// `colossal-run serve`'s HTTP server: OpenAI-compatible /v1/completions and
// /v1/chat/completions (whole responses or server-sent events), /v1/models, /health and
// /metrics (Prometheus text), over an EngineLoop. Each connection has a thread of its own, so a
// slow client holds up only itself; a streaming client that goes away aborts its requests.
#pragma once

#include <memory>
#include <string>

#include "core/config/config.h"
#include "core/serve/chat_template.h"
#include "core/serve/engine_loop.h"
#include "core/serve/openai_api.h"
#include "core/text/tokenizer.h"

namespace httplib {
class Server;
}

namespace cr {

struct ServedModel {
  std::string name;  // the id /v1/models lists and responses carry
  const Tokenizer* tokenizer = nullptr;
  int64_t context = 0;     // max_seq_len
  int64_t vocab_size = 0;  // the model's; ids at or above the tokenizer's are never sampled
  ChatTemplate chat_template = ChatTemplate::Plain;
};

class HttpServer {
 public:
  HttpServer(EngineLoop& loop, ServedModel model, const ServeConfig& config);
  ~HttpServer();

  // Binds the address and returns the port (the one the system chose when `port` is 0);
  // cr::Error naming the address when it cannot be bound.
  int bind(const std::string& host, int port);
  void run();   // serves until stop()
  void stop();  // from any thread (a signal handler's watcher)

 private:
  void add_routes();
  // The engine requests of a completion request's choices: its prompt's tokens checked against
  // the context, the KV cache and the vocabulary. ApiError when it cannot run.
  std::vector<ServingRequest> choices_for(const CompletionRequest& parsed) const;

  EngineLoop& loop_;
  ServedModel model_;
  ServeConfig config_;
  std::unique_ptr<httplib::Server> server_;
  int listen_socket_ = -1;
};

}  // namespace cr
