#include "memory/gemini/heap_meter.h"

#include <malloc.h>

namespace cr {

int64_t heap_bytes_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

}  // namespace cr
