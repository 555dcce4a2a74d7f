// The main of a multi-rank test: MPI up, `world` set for the tests, Catch run, MPI down.
#pragma once

#include <catch2/catch.hpp>

#include "core/base/log.h"
#include "parallel/mpi_communicator.h"

namespace cr::test {

inline int run_mpi_session(int argc, char** argv, Communicator*& world) {
  auto mpi = mpi_world(60.0);
  world = mpi.get();
  set_log_rank(mpi->rank(), mpi->size());
  const int result = Catch::Session().run(argc, argv);
  world = nullptr;
  mpi.reset();
  mpi_finalize();
  return result;
}

}  // namespace cr::test
