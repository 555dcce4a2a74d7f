#include "models/flop_counter.h"

namespace cr {

thread_local MatmulCounter* MatmulCounter::active_ = nullptr;

MatmulCounter::MatmulCounter() : outer_(active_) { active_ = this; }

MatmulCounter::~MatmulCounter() { active_ = outer_; }

}  // namespace cr
