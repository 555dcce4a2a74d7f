#include "core/serve/engine_commands.h"

#include <nlohmann/json.hpp>

namespace cr {

std::string EngineCommands::encode() const {
  nlohmann::json submitted = nlohmann::json::array();
  for (const ServingRequest& r : submissions) {
    submitted.push_back({{"prompt", r.prompt},
                         {"max_new_tokens", r.max_new_tokens},
                         {"temperature", r.sampling.temperature},
                         {"top_k", r.sampling.top_k},
                         {"top_p", r.sampling.top_p},
                         {"seed", r.seed},
                         {"stop_tokens", r.stop_tokens},
                         {"vocab_limit", r.vocab_limit ? nlohmann::json(*r.vocab_limit) : nlohmann::json(nullptr)}});
  }
  return nlohmann::json{{"submissions", submitted}, {"aborts", aborts}, {"stop", stop}}.dump();
}

EngineCommands EngineCommands::decode(const std::string& text) {
  const auto root = nlohmann::json::parse(text);
  EngineCommands commands;
  for (const auto& r : root.at("submissions")) {
    ServingRequest request;
    request.prompt = r.at("prompt").get<std::vector<int64_t>>();
    request.max_new_tokens = r.at("max_new_tokens");
    request.sampling = {r.at("temperature"), r.at("top_k"), r.at("top_p")};
    request.seed = r.at("seed");
    request.stop_tokens = r.at("stop_tokens").get<std::vector<int64_t>>();
    if (!r.at("vocab_limit").is_null()) request.vocab_limit = r.at("vocab_limit").get<int64_t>();
    commands.submissions.push_back(std::move(request));
  }
  commands.aborts = root.at("aborts").get<std::vector<RequestId>>();
  commands.stop = root.at("stop");
  return commands;
}

std::vector<SubmissionResult> apply_commands(ServingEngine& engine, const EngineCommands& commands) {
  std::vector<SubmissionResult> results;
  for (const ServingRequest& request : commands.submissions) {
    try {
      results.push_back({engine.submit(request), ""});
    } catch (const std::exception& e) {
      results.push_back({std::nullopt, e.what()});
    }
  }
  for (RequestId request : commands.aborts) engine.abort(request);
  return results;
}

void follow_engine(ServingEngine& engine, const std::function<std::string()>& receive) {
  // A failed iteration throws here and ends the job, as any rank's error does.
  while (true) {
    const EngineCommands commands = EngineCommands::decode(receive());
    if (commands.stop) return;
    apply_commands(engine, commands);
    engine.step();
  }
}

}  // namespace cr
