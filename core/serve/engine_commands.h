// What rank 0 of a tensor-parallel server sends the other ranks before each engine iteration:
// the round's new requests and aborts, so that every rank's engine makes the same decisions.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/serve/serving_engine.h"

namespace cr {

// One round's changes to the engine's requests, as rank 0 sends them to the other ranks.
struct EngineCommands {
  std::vector<ServingRequest> submissions;
  std::vector<RequestId> aborts;
  bool stop = false;  // the server is shutting down

  std::string encode() const;
  static EngineCommands decode(const std::string& text);
};

// Submits, then aborts, in order; for each submission its id, or the reason the engine refused it.
struct SubmissionResult {
  std::optional<RequestId> id;
  std::string error;
};
std::vector<SubmissionResult> apply_commands(ServingEngine& engine, const EngineCommands& commands);

// The other ranks' loop: rank 0's commands from `receive`, then one engine iteration, until stop.
void follow_engine(ServingEngine& engine, const std::function<std::string()>& receive);

}  // namespace cr
