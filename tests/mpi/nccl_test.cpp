// The NCCL communicator on device buffers (label gpu; run with mpirun -np 2 on a machine with two
// GPUs): exact delivery of all-to-all-v and batched exchanges (also after connect), host
// all-gather, grid sub-communicators, and a stuck peer giving an error that names the operation
// and the peer.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "dbsp/communicator.hpp"
#include "dbsp/error.hpp"
#include "mpi_test_support.hpp"
#include "nccl_fixture.hpp"

namespace dbsp {
namespace {

int64_t encode(int source, int dest, int64_t index) {
  return (int64_t{source} * 64 + dest) * 100000 + index;
}

TEST_F(Nccl, AllToAllVDeliversEveryElementOnTheDevice) {
  Communicator& comm = *nccl_;
  ASSERT_EQ(comm.memory(), MemorySpace::device);
  const int P = comm.size(), me = comm.rank();
  std::vector<int64_t> send_counts(P), send_displs(P), recv_counts(P), recv_displs(P);
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < P; ++p) {
    send_counts[p] = 1000 + 37 * ((me + 2 * p) % 5);
    recv_counts[p] = 1000 + 37 * ((p + 2 * me) % 5);
    send_displs[p] = send_total;
    recv_displs[p] = recv_total;
    send_total += send_counts[p];
    recv_total += recv_counts[p];
  }
  std::vector<int64_t> send(send_total);
  for (int p = 0; p < P; ++p) {
    for (int64_t e = 0; e < send_counts[p]; ++e) send[send_displs[p] + e] = encode(me, p, e);
  }
  DeviceBuffer send_device(send.size() * sizeof(int64_t)),
      recv_device(recv_total * sizeof(int64_t));
  send_device.upload(send);
  comm.all_to_all_v<int64_t>(static_cast<const int64_t*>(send_device.get()), send_counts,
                             send_displs, static_cast<int64_t*>(recv_device.get()), recv_counts,
                             recv_displs);
  const std::vector<int64_t> recv = recv_device.download<int64_t>(recv_total);
  for (int p = 0; p < P; ++p) {
    for (int64_t e = 0; e < recv_counts[p]; ++e) {
      ASSERT_EQ(recv[recv_displs[p] + e], encode(p, me, e)) << "from rank " << p;
    }
  }
}

TEST_F(Nccl, ConnectThenExchangeDeliversOnTheDevice) {
  Communicator& comm = *nccl_;
  const int P = comm.size(), me = comm.rank();
  std::vector<int> everyone(static_cast<size_t>(P));
  for (int p = 0; p < P; ++p) everyone[p] = p;
  comm.connect(everyone, "connect everyone");
  const int outside[] = {-1};
  EXPECT_THROW(comm.connect(outside, "connect outside"), Error);
  const int dest = (me + 1) % P, source = (me + P - 1) % P;
  const std::vector<int64_t> out(1000, encode(me, dest, 3));
  const int64_t bytes = static_cast<int64_t>(out.size() * sizeof(int64_t));
  DeviceBuffer out_device(static_cast<size_t>(bytes)), in_device(static_cast<size_t>(bytes));
  out_device.upload(out);
  const SendOp send{dest, out_device.get(), bytes};
  const RecvOp recv{source, in_device.get(), bytes};
  comm.exchange({&send, 1}, {&recv, 1}, "after connect");
  EXPECT_EQ(in_device.download<int64_t>(out.size()),
            std::vector<int64_t>(out.size(), encode(source, me, 3)));
}

TEST_F(Nccl, AllGatherHostAndGridSplitsFollowTheRankLayout) {
  Communicator& comm = *nccl_;
  const std::vector<int> all = comm.all_gather(comm.rank() * 3);
  for (int p = 0; p < comm.size(); ++p) EXPECT_EQ(all[p], p * 3);
  for (Grid grid : factorizations(comm.size())) {
    GridCommunicators grid_comms = GridCommunicators::build(comm, grid);
    EXPECT_EQ(grid_comms.ulysses->rank(), ulysses_rank_of(comm.rank(), grid));
    EXPECT_EQ(grid_comms.ring->rank(), ring_rank_of(comm.rank(), grid));
    const std::vector<int> ring = grid_comms.ring->all_gather(comm.rank());
    for (int r = 0; r < grid.ring; ++r) {
      EXPECT_EQ(ring[r], grid_rank(ulysses_rank_of(comm.rank(), grid), r, grid));
    }
  }
}

TEST_F(Nccl, StuckPeerGivesErrorNamingOperationAndPeerWithinTimeout) {
  if (nccl_->size() < 2) GTEST_SKIP() << "needs a second rank";
  std::unique_ptr<Communicator> comm = nccl_->split(0, nccl_->rank());
  comm->set_timeout(3.0);
  if (comm->rank() != 1) {
    DeviceBuffer out(4096), in(4096);
    const SendOp send{1, out.get(), 4096};
    const RecvOp recv{1, in.get(), 4096};
    const auto start = std::chrono::steady_clock::now();
    std::string message;
    try {
      comm->exchange({&send, 1}, {&recv, 1}, "stuck-peer exchange");
    } catch (const Error& e) {
      message = e.what();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(message.find("stuck-peer exchange"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1"), std::string::npos) << message;
    EXPECT_LT(seconds, 20.0);
  }
  comm.reset();
  test::world().barrier("nccl stuck-peer test end");
}

}  // namespace
}  // namespace dbsp
