// The MPI backend: host buffers, non-blocking point-to-point polled against a deadline, so a dead
// or stuck peer produces an error naming the operation and the peer instead of a hang.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "dbsp/communicator.hpp"

namespace dbsp::comm {

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction) and sets MPI_ERRORS_RETURN on it.
  MpiCommunicator(MPI_Comm comm, CommOptions options);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemorySpace memory() const override { return MemorySpace::host; }
  std::string backend() const override { return "mpi"; }

  std::unique_ptr<PendingExchange> start_exchange(std::span<const SendOp> sends,
                                                  std::span<const RecvOp> recvs,
                                                  std::string_view operation) override;
  void all_gather_host(const void* send, int64_t bytes, void* recv,
                       std::string_view operation) override;
  std::unique_ptr<Communicator> split(int color, int key) override;

  // Set by a failed exchange: later operations throw at once instead of waiting again.
  void mark_failed(const std::string& reason) { failure_ = reason; }
  void require_usable(std::string_view operation) const;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  int tag_limit_ = 32767;
  int64_t exchanges_ = 0;  // sequence number of the next batch; its tag keeps batches apart
  std::string failure_;
};

}  // namespace dbsp::comm
