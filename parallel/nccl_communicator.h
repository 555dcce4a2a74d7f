// The NCCL backend: communicators over CUDA tensors, written against the CUDA runtime and NCCL C
// APIs only (raw device pointers), so it builds with or without a CUDA-enabled LibTorch. Built
// when CMake finds the CUDA runtime and NCCL (option CR_WITH_NCCL); otherwise nccl_group fails.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace cr {

// Whether this build has the NCCL backend.
bool nccl_available();

// A NCCL group with the members, name and timeout of `mpi_group` (from mpi_world or its splits),
// on CUDA device `device`. Collective over mpi_group: rank 0 creates NCCL's unique id and
// broadcasts it over MPI.
//
// Operations run on the group's own CUDA stream, ordered after the work already queued on the
// legacy default stream (LibTorch's default); wait() blocks the host until they are done.
// NCCL has no message tags: sends and recvs between one pair of ranks match in issue order.
std::unique_ptr<Communicator> nccl_group(Communicator& mpi_group, int device);

}  // namespace cr
