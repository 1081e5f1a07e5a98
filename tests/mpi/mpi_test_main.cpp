// main() of the multi-rank GoogleTest binaries: MPI up, every rank runs every test, rank 0 prints
// the usual report and other ranks print only their failures (prefixed with the rank).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "dbsp/communicator.hpp"
#include "mpi_test_support.hpp"

namespace {

class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  dbsp::MpiEnvironment mpi(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new RankFailurePrinter(rank));
  const int failed = RUN_ALL_TESTS();
  dbsp::test::release_world();
  return failed;
}
