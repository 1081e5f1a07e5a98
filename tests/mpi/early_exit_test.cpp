// A rank that leaves the job early (finalises MPI and exits before a collective): every other rank
// must fail within its timeout with an error that names the operation and the missing peer. Exits
// 0 when that happens, 1 otherwise.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "dbsp/communicator.hpp"
#include "dbsp/error.hpp"

int main(int argc, char** argv) {
  int status = 0;
  {
    dbsp::MpiEnvironment mpi(argc, argv);
    auto world = dbsp::make_mpi_world({.timeout_seconds = 30});
    world->barrier("start");
    const int leaver = world->size() - 1;
    if (world->rank() == leaver) {
      world.reset();
      return 0;  // MpiEnvironment finalises on the way out
    }
    world->set_timeout(2.0);
    const int P = world->size();
    std::vector<int64_t> counts(P, 8), displs(P);
    for (int p = 0; p < P; ++p) displs[p] = 8 * p;
    std::vector<char> send(static_cast<size_t>(8 * P), 1), recv(send.size());
    const auto start = std::chrono::steady_clock::now();
    std::string message;
    try {
      world->all_to_all_v(send.data(), counts, displs, recv.data(), counts, displs,
                          "early-exit all_to_all_v");
    } catch (const dbsp::Error& e) {
      message = e.what();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string peer = "rank " + std::to_string(leaver);
    const bool named = message.find("early-exit all_to_all_v") != std::string::npos &&
                       message.find(peer) != std::string::npos;
    std::printf("rank %d: %.2f s: %s\n", world->rank(), seconds,
                message.empty() ? "no error" : message.c_str());
    if (!named || seconds > 10.0) status = 1;
  }
  return status;
}
