// Hooks into the MPI backend for backends bootstrapped from it (NCCL); not a public interface.
#pragma once

#include <memory>

#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"

namespace cr::detail {

// A new MPI communicator with the members, name and timeout of `mpi_group` (MPI_Comm_dup), so
// that another backend gets its own sequence of collectives. Collective over the group.
// Throws unless `mpi_group` comes from mpi_world() or its splits.
std::unique_ptr<Communicator> duplicate_mpi_group(Communicator& mpi_group);

// The state that timeouts on `mpi_group` report from.
std::shared_ptr<GroupState> mpi_group_state(Communicator& mpi_group);

}  // namespace cr::detail
