// Test-only accounting of the multiply-accumulates done by the models' forward matmuls (the
// linear layers, attention's scores and values, the LM head), so that the analytic
// flops_per_token is checked against what a forward pass really computes. Off unless a
// MatmulCounter is alive on the calling thread; then each matmul costs one branch more.
#pragma once

#include <cstdint>

namespace cr {

class MatmulCounter {
 public:
  // Counts this thread's forward matmuls from now until destroyed (the innermost counter only).
  MatmulCounter();
  ~MatmulCounter();
  MatmulCounter(const MatmulCounter&) = delete;
  MatmulCounter& operator=(const MatmulCounter&) = delete;

  int64_t multiply_accumulates() const { return multiply_accumulates_; }

  // Called where a model multiplies an (m x k) by a (k x n) matrix.
  static void count(int64_t m, int64_t k, int64_t n) {
    if (active_) active_->multiply_accumulates_ += m * k * n;
  }

 private:
  static thread_local MatmulCounter* active_;
  MatmulCounter* outer_;
  int64_t multiply_accumulates_ = 0;
};

}  // namespace cr
