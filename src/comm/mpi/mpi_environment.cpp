// MPI start-up and shutdown for a process, and the world communicator.
#include <mpi.h>

#include <cstdlib>

#include "comm/mpi/mpi_check.hpp"
#include "comm/mpi/mpi_communicator.hpp"
#include "comm/poll.hpp"
#include "dbsp/communicator.hpp"

namespace dbsp {

bool mpi_available() { return true; }

MpiEnvironment::MpiEnvironment(int& argc, char**& argv) {
  int initialized = 0;
  DBSP_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) return;
  int provided = 0;
  // Only the calling thread talks to MPI; OpenMP threads inside kernels never do.
  DBSP_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
  owns_ = true;
}

MpiEnvironment::MpiEnvironment() {
  int initialized = 0;
  DBSP_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) return;
  int provided = 0;
  DBSP_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  owns_ = true;
}

MpiEnvironment::~MpiEnvironment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

void MpiEnvironment::abort(int exit_code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

std::unique_ptr<Communicator> make_mpi_world(const CommOptions& options) {
  int initialized = 0;
  DBSP_MPI_CHECK(MPI_Initialized(&initialized));
  require(initialized, "make_mpi_world: MPI is not initialised (create a dbsp::MpiEnvironment)");
  // A non-blocking duplicate so that a rank that never arrives gives a timeout, not a hang.
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Request request = MPI_REQUEST_NULL;
  DBSP_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &world, &request));
  int done = 0;
  const bool settled = comm::poll_until(options.timeout_seconds, [&] {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    return done != 0;
  });
  require(settled, "mpi: duplicating MPI_COMM_WORLD timed out after ", options.timeout_seconds,
          " s; some rank did not call make_mpi_world");
  return std::make_unique<comm::MpiCommunicator>(world, options);
}

}  // namespace dbsp
