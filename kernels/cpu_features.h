// Instruction-set extensions of the running CPU (and enabled by the OS), for run-time dispatch.
#pragma once

namespace cr {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
};

const CpuFeatures& cpu_features();

}  // namespace cr
