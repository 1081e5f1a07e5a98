// Stand-ins for the backends this build left out, so that callers can ask and get a clear error.
#include <cstdlib>

#include "dbsp/communicator.hpp"
#include "dbsp/error.hpp"

namespace dbsp {

#ifndef DBSP_HAVE_MPI
bool mpi_available() { return false; }
MpiEnvironment::MpiEnvironment(int&, char**&) {}
MpiEnvironment::MpiEnvironment() {}
MpiEnvironment::~MpiEnvironment() = default;
void MpiEnvironment::abort(int exit_code) { std::_Exit(exit_code); }
std::unique_ptr<Communicator> make_mpi_world(const CommOptions&) {
  fail("dbsp was built without MPI (configure with -DDBSP_MPI=ON and an MPI installation)");
}
#endif

#ifndef DBSP_HAVE_NCCL
bool nccl_available() { return false; }
std::unique_ptr<Communicator> make_nccl_world(Communicator&, int, const CommOptions&) {
  fail("dbsp was built without NCCL (configure with -DDBSP_CUDA=ON and NCCL installed)");
}
int device_for_rank(int) { fail("dbsp was built without NCCL/CUDA: no GPU device to select"); }
std::unique_ptr<Communicator> make_nccl_world_from_file(const std::string&, int, int, int,
                                                        const CommOptions&) {
  fail("dbsp was built without NCCL (configure with -DDBSP_CUDA=ON and NCCL installed)");
}
#endif

}  // namespace dbsp
