// The MPI communicator under mpirun: every byte of all-to-all-v and batched exchanges reaches the
// right rank and offset, grid sub-communicators follow rank = ring_rank * U + ulysses_rank, and a
// peer that never shows up gives an error naming the operation and the peer within the timeout.
#include "dbsp/communicator.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <numeric>
#include <string>

#include "dbsp/error.hpp"
#include "mpi_test_support.hpp"

namespace dbsp {
namespace {

// Payload element `index` of the message from `source` to `dest`, unique over the whole job.
int64_t encode(int source, int dest, int64_t index) {
  return (int64_t{source} * 64 + dest) * 100000 + index;
}
int64_t message_elements(int source, int dest) { return (source + 2 * dest) % 5; }  // some zero

TEST(MpiCommunicator, AllToAllVDeliversEveryElementToItsRankAndOffset) {
  Communicator& comm = test::world();
  const int P = comm.size(), me = comm.rank();
  std::vector<int64_t> send_counts(P), send_displs(P), recv_counts(P), recv_displs(P);
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < P; ++p) {
    send_counts[p] = message_elements(me, p);
    recv_counts[p] = message_elements(p, me);
    // Gaps between messages on both sides: offsets are honoured, gaps stay untouched.
    send_displs[p] = send_total + 1;
    recv_displs[p] = recv_total + 2;
    send_total += send_counts[p] + 1;
    recv_total += recv_counts[p] + 2;
  }
  std::vector<int64_t> send(send_total + 1, -1), recv(recv_total + 2, -7);
  for (int p = 0; p < P; ++p) {
    for (int64_t e = 0; e < send_counts[p]; ++e) send[send_displs[p] + e] = encode(me, p, e);
  }
  comm.all_to_all_v<int64_t>(send.data(), send_counts, send_displs, recv.data(), recv_counts,
                             recv_displs);
  std::vector<int64_t> expected(recv.size(), -7);
  for (int p = 0; p < P; ++p) {
    for (int64_t e = 0; e < recv_counts[p]; ++e) expected[recv_displs[p] + e] = encode(p, me, e);
  }
  EXPECT_EQ(recv, expected);
}

TEST(MpiCommunicator, ExchangeDeliversShiftedBatchesOfUnevenSize) {
  Communicator& comm = test::world();
  const int P = comm.size(), me = comm.rank();
  for (int shift = 0; shift < P; ++shift) {
    const int dest = (me + shift) % P, source = (me - shift + P) % P;
    std::vector<int64_t> out(static_cast<size_t>(3 + dest * 7)),
        in(static_cast<size_t>(3 + me * 7), -1);
    for (size_t e = 0; e < out.size(); ++e) out[e] = encode(me, dest, static_cast<int64_t>(e));
    const SendOp send{dest, out.data(), static_cast<int64_t>(out.size() * sizeof(int64_t))};
    const RecvOp recv{source, in.data(), static_cast<int64_t>(in.size() * sizeof(int64_t))};
    comm.exchange({&send, 1}, {&recv, 1}, "shift test");
    for (size_t e = 0; e < in.size(); ++e) {
      ASSERT_EQ(in[e], encode(source, me, static_cast<int64_t>(e))) << "shift " << shift;
    }
  }
}

TEST(MpiCommunicator, AllGatherOrdersContributionsByRank) {
  Communicator& comm = test::world();
  const std::vector<int64_t> all = comm.all_gather<int64_t>(encode(comm.rank(), 0, 5));
  ASSERT_EQ(static_cast<int>(all.size()), comm.size());
  for (int p = 0; p < comm.size(); ++p) EXPECT_EQ(all[p], encode(p, 0, 5));
}

TEST(MpiCommunicator, RejectsMalformedBatchesBeforeSendingAnything) {
  Communicator& comm = test::world();
  int64_t word = 0;
  const SendOp twice[2] = {{0, &word, 8}, {0, &word, 8}};
  EXPECT_THROW(comm.start_exchange(twice, {}, "bad batch"), Error);
  const SendOp outside{comm.size(), &word, 8};
  EXPECT_THROW(comm.start_exchange({&outside, 1}, {}, "bad batch"), Error);
  const std::vector<int64_t> short_counts(static_cast<size_t>(comm.size()) + 1, 0);
  EXPECT_THROW(
      comm.all_to_all_v(&word, short_counts, short_counts, &word, short_counts, short_counts),
      Error);
  comm.barrier();  // still usable: nothing was posted
}

TEST(MpiCommunicator, ConnectSkipsThisRankAndRepeatsAndLeavesExchangesExact) {
  Communicator& comm = test::world();
  const int P = comm.size(), me = comm.rank();
  std::vector<int> everyone(static_cast<size_t>(P));
  std::iota(everyone.begin(), everyone.end(), 0);
  everyone.push_back(me);
  everyone.push_back((me + 1) % P);
  comm.connect(everyone, "connect everyone");
  const int neighbours[] = {(me + 1) % P, (me + P - 1) % P};
  comm.connect(neighbours, "connect neighbours");
  const int outside[] = {P};
  EXPECT_THROW(comm.connect(outside, "connect outside"), Error);
  // Still usable, and the next batch is matched with its own sends, not with connect's bytes.
  const int dest = (me + 1) % P, source = (me + P - 1) % P;
  int64_t out = encode(me, dest, 0), in = -1;
  const SendOp send{dest, &out, 8};
  const RecvOp recv{source, &in, 8};
  comm.exchange({&send, 1}, {&recv, 1}, "after connect");
  EXPECT_EQ(in, encode(source, me, 0));
}

TEST(GridCommunicators, UlyssesGroupsShareARingRankAndRingsShareAUlyssesRank) {
  Communicator& comm = test::world();
  for (Grid grid : factorizations(comm.size())) {
    GridCommunicators grid_comms = GridCommunicators::build(comm, grid);
    const int me = comm.rank();
    ASSERT_EQ(grid_comms.ulysses->size(), grid.ulysses);
    ASSERT_EQ(grid_comms.ring->size(), grid.ring);
    EXPECT_EQ(grid_comms.ulysses->rank(), ulysses_rank_of(me, grid));
    EXPECT_EQ(grid_comms.ring->rank(), ring_rank_of(me, grid));
    const std::vector<int> ulysses_members = grid_comms.ulysses->all_gather(me);
    for (int u = 0; u < grid.ulysses; ++u) {
      EXPECT_EQ(ulysses_members[u], grid_rank(u, ring_rank_of(me, grid), grid)) << grid.name();
    }
    const std::vector<int> ring_members = grid_comms.ring->all_gather(me);
    for (int r = 0; r < grid.ring; ++r) {
      EXPECT_EQ(ring_members[r], grid_rank(ulysses_rank_of(me, grid), r, grid)) << grid.name();
    }
  }
}

TEST(MpiCommunicator, StuckPeerGivesErrorNamingOperationAndPeerWithinTimeout) {
  Communicator& world = test::world();
  if (world.size() < 2) GTEST_SKIP() << "needs a second rank";
  // A private communicator: it is unusable after the timeout, the world stays healthy.
  std::unique_ptr<Communicator> comm = world.split(0, world.rank());
  comm->set_timeout(1.0);
  const int stuck = 1;
  if (comm->rank() != stuck) {
    const int P = comm->size();
    std::vector<int64_t> counts(P, 4), displs(P);
    std::iota(displs.begin(), displs.end(), 0);
    for (int64_t& d : displs) d *= 4;
    std::vector<char> send(static_cast<size_t>(4 * P), 1), recv(send.size());
    const auto start = std::chrono::steady_clock::now();
    std::string message;
    try {
      comm->all_to_all_v(send.data(), counts, displs, recv.data(), counts, displs,
                         "stuck-peer all_to_all_v");
    } catch (const Error& e) {
      message = e.what();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(message.find("stuck-peer all_to_all_v"), std::string::npos) << message;
    EXPECT_NE(message.find("timed out"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1 (receive"), std::string::npos) << message;
    EXPECT_GE(seconds, 0.9);
    EXPECT_LT(seconds, 10.0);
    // Later operations fail at once and say why.
    try {
      comm->barrier("after failure");
      ADD_FAILURE() << "a failed communicator accepted another operation";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("already failed"), std::string::npos) << e.what();
    }
  }
  world.barrier("stuck-peer test end");
}

}  // namespace
}  // namespace dbsp
