// MPI datatypes and reduction ops for tensor dtypes, including the 16-bit floating types MPI
// has no type for.
#pragma once

#include <mpi.h>

#include <ATen/ATen.h>

#include "parallel/communicator.h"

namespace cr::detail {

// Creates the 16-bit types and their ops; called once, right after MPI_Init_thread.
void create_mpi_types();
void free_mpi_types();

// The element type of `dtype`; bfloat16 and float16 map to an opaque 2-byte type.
MPI_Datatype mpi_datatype(at::ScalarType dtype);
// The reduction for `op` on `dtype`. Avg maps to Sum: the caller divides afterwards.
MPI_Op mpi_op(ReduceOp op, at::ScalarType dtype);

}  // namespace cr::detail
