#include "parallel/mpi_types.h"

#include <cmath>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "core/base/error.h"

namespace cr::detail {
namespace {

MPI_Datatype g_two_bytes = MPI_DATATYPE_NULL;
MPI_Op g_bf16_sum = MPI_OP_NULL;
MPI_Op g_bf16_max = MPI_OP_NULL;
MPI_Op g_f16_sum = MPI_OP_NULL;
MPI_Op g_f16_max = MPI_OP_NULL;

struct Add {
  float operator()(float a, float b) const { return a + b; }
};
// NaN wins, so that an overflow check by max sees a NaN on any rank.
struct Max {
  float operator()(float a, float b) const { return (a > b || std::isnan(a)) ? a : b; }
};

// Each step in float32, rounded back to nearest even: what a float32 reduction followed by one
// cast would give for two operands, and the rule c10::BFloat16 / c10::Half construction follows.
template <typename Half, typename Combine>
void reduce_16bit(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const Half*>(in);
  auto* b = static_cast<Half*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = Half(Combine()(static_cast<float>(a[i]), static_cast<float>(b[i])));
}

void check_mpi(int rc, const char* call) {
  if (rc != MPI_SUCCESS) fail("MPI set-up: {} failed with code {}", call, rc);
}

}  // namespace

void create_mpi_types() {
  check_mpi(MPI_Type_contiguous(2, MPI_BYTE, &g_two_bytes), "MPI_Type_contiguous");
  check_mpi(MPI_Type_commit(&g_two_bytes), "MPI_Type_commit");
  const int commutative = 1;
  check_mpi(MPI_Op_create(&reduce_16bit<c10::BFloat16, Add>, commutative, &g_bf16_sum), "MPI_Op_create");
  check_mpi(MPI_Op_create(&reduce_16bit<c10::BFloat16, Max>, commutative, &g_bf16_max), "MPI_Op_create");
  check_mpi(MPI_Op_create(&reduce_16bit<c10::Half, Add>, commutative, &g_f16_sum), "MPI_Op_create");
  check_mpi(MPI_Op_create(&reduce_16bit<c10::Half, Max>, commutative, &g_f16_max), "MPI_Op_create");
}

void free_mpi_types() {
  for (MPI_Op* op : {&g_bf16_sum, &g_bf16_max, &g_f16_sum, &g_f16_max}) {
    if (*op != MPI_OP_NULL) MPI_Op_free(op);
  }
  if (g_two_bytes != MPI_DATATYPE_NULL) MPI_Type_free(&g_two_bytes);
}

MPI_Datatype mpi_datatype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kBFloat16:
    case at::kHalf: return g_two_bytes;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default: fail("no MPI datatype for {}", c10::toString(dtype));
  }
}

MPI_Op mpi_op(ReduceOp op, at::ScalarType dtype) {
  const bool max = op == ReduceOp::Max;
  if (dtype == at::kBFloat16) return max ? g_bf16_max : g_bf16_sum;
  if (dtype == at::kHalf) return max ? g_f16_max : g_f16_sum;
  return max ? MPI_MAX : MPI_SUM;
}

}  // namespace cr::detail
