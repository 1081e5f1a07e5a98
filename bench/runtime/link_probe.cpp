// Measures the link that `dbsp run --emulate` prices transfers with: ranks exchange device buffers
// pairwise through dbsp's own NCCL communicator (every rank sends to and receives from its
// partner at once, as in the runtime's all-to-alls and ring steps). Prints a table of message size
// against time and one line `link: <GB/s> GB/s <us> us` (bandwidth of the largest message, latency
// of the smallest) that scripts pass on as --link-gbps and --latency-us.
//   usage: mpirun -np 2 bench_link_probe [max_megabytes]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dbsp/communicator.hpp"
#include "dbsp/error.hpp"

namespace {

void check(cudaError_t status, const char* what) {
  dbsp::require(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

// Median wall time in microseconds of one pairwise exchange of `bytes`.
double exchange_us(dbsp::Communicator& comm, void* send, void* recv, int64_t bytes, int reps) {
  const int partner = comm.rank() ^ 1;
  const dbsp::SendOp sends[] = {{partner, send, bytes}};
  const dbsp::RecvOp recvs[] = {{partner, recv, bytes}};
  for (int i = 0; i < 3; ++i) comm.exchange(sends, recvs, "link probe warm-up");
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    comm.barrier("link probe");
    const auto start = std::chrono::steady_clock::now();
    comm.exchange(sends, recvs, "link probe");
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::nth_element(times.begin(), times.begin() + reps / 2, times.end());
  return times[reps / 2];
}

}  // namespace

int main(int argc, char** argv) {
  dbsp::MpiEnvironment mpi(argc, argv);
  try {
    std::unique_ptr<dbsp::Communicator> world = dbsp::make_mpi_world({.timeout_seconds = 60});
    dbsp::require(world->size() % 2 == 0, "link probe: needs an even rank count, got ",
                  world->size());
    std::unique_ptr<dbsp::Communicator> nccl =
        dbsp::make_nccl_world(*world, dbsp::device_for_rank(world->rank()), {.timeout_seconds = 60});
    const int64_t max_bytes = (argc > 1 ? std::atoll(argv[1]) : 256) << 20;
    void* send = nullptr;
    void* recv = nullptr;
    check(cudaMalloc(&send, max_bytes), "cudaMalloc");
    check(cudaMalloc(&recv, max_bytes), "cudaMalloc");
    check(cudaMemset(send, 1, max_bytes), "cudaMemset");
    const bool root = world->rank() == 0;
    if (root) std::printf("%14s %12s %10s\n", "bytes", "median_us", "GB/s");
    double latency = 0, bandwidth = 0;
    for (int64_t bytes = 8; bytes <= max_bytes; bytes *= 4) {
      const double us = exchange_us(*nccl, send, recv, bytes, bytes < (1 << 20) ? 200 : 20);
      const std::vector<double> all = world->all_gather(us, "link probe gather");
      const double slowest = *std::max_element(all.begin(), all.end());
      if (bytes == 8) latency = slowest;
      bandwidth = bytes / slowest * 1e-3;
      if (root) std::printf("%14lld %12.2f %10.2f\n", static_cast<long long>(bytes), slowest,
                            bandwidth);
    }
    if (root) std::printf("link: %.1f GB/s %.1f us\n", bandwidth, latency);
    check(cudaFree(send), "cudaFree");
    check(cudaFree(recv), "cudaFree");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "link probe: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
