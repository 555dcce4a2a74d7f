// nccl_group for builds without CUDA's runtime or NCCL.
#include "core/base/error.h"
#include "parallel/nccl_communicator.h"

namespace cr {

bool nccl_available() { return false; }

std::unique_ptr<Communicator> nccl_group(Communicator& mpi_group, int device) {
  fail("group '{}': this build has no NCCL backend (CMake found no CUDA runtime or NCCL; see CR_WITH_NCCL)",
       mpi_group.name());
}

}  // namespace cr
