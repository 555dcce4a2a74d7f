// The MPI backend: communicators over CPU tensors, and the bootstrap every other backend uses.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace cr {

// The group of all ranks, named "world". The first call initialises MPI (with
// MPI_THREAD_MULTIPLE where the library offers it, for the watchdog thread); every rank must
// call it. A collective that has not completed `collective_timeout_s` seconds after it started
// aborts the job; groups split from this one inherit the timeout.
std::unique_ptr<Communicator> mpi_world(double collective_timeout_s);

// Finalises MPI; call once at the end, on every rank, after destroying every communicator.
void mpi_finalize();

// After a fatal error on this rank: ends every rank of a multi-rank job (mpirun then exits
// non-zero) instead of leaving the others blocked in their next collective. No-op otherwise.
void abort_job_if_distributed(int exit_code);

}  // namespace cr
