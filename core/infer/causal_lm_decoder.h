// Any model of the zoo as a CachedDecoder: its forward_cached pass over a KVCache of its own.
#pragma once

#include <memory>

#include "core/infer/generation.h"
#include "models/causal_lm.h"

namespace cr {

// The decoder shares `model`'s weights; it switches the model to eval mode (no dropout).
std::unique_ptr<CachedDecoder> make_cached_decoder(CausalLM model);

}  // namespace cr
