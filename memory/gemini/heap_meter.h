// Bytes the process's heap holds now (glibc's allocator: every arena and mmap-ed block), from
// which Gemini's auto policy takes non-model memory on an emulated device: what the heap holds
// beyond the chunks' own buffers, measured against the start of the step.
#pragma once

#include <cstdint>

namespace cr {

int64_t heap_bytes_in_use();

}  // namespace cr
