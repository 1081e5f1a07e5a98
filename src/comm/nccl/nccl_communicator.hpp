// The NCCL backend: device buffers on one GPU per rank, non-blocking NCCL communicators polled
// against a deadline (ncclCommGetAsyncError, events), and ncclCommAbort when a peer does not come.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "dbsp/communicator.hpp"

namespace dbsp::comm {

class NcclCommunicator final : public Communicator {
 public:
  // Joins the communicator of `size` ranks named by `id` (collective, bounded by the timeout).
  NcclCommunicator(const ncclUniqueId& id, int rank, int size, int device, CommOptions options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemorySpace memory() const override { return MemorySpace::device; }
  std::string backend() const override { return "nccl"; }

  // Transfers run on this communicator's stream, which is ordered after work already queued on
  // the legacy default stream; wait() returns once the data has arrived.
  std::unique_ptr<PendingExchange> start_exchange(std::span<const SendOp> sends,
                                                  std::span<const RecvOp> recvs,
                                                  std::string_view operation) override;
  void all_gather_host(const void* send, int64_t bytes, void* recv,
                       std::string_view operation) override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void connect(std::span<const int> peers, std::string_view operation = "connect") override;

  // Polls until the communicator has no call in progress, at most the timeout; on a timeout or an
  // asynchronous error it aborts the communicator and throws naming `operation` and `waiting_for`.
  void wait_ready(std::string_view operation, const std::string& waiting_for);
  // Polls `event` the same way.
  void wait_event(cudaEvent_t event, std::string_view operation, const std::string& waiting_for);
  void require_usable(std::string_view operation) const;
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  ncclComm_t handle() const { return comm_; }
  // Marks the communicator failed and aborts it (ends kernels waiting for absent peers).
  void abort(const std::string& reason) noexcept;

 private:
  NcclCommunicator(ncclComm_t comm, int device, CommOptions options);  // adopts a split result
  [[noreturn]] void abort_with(const std::string& message);
  // The device buffer of the communicator's own small transfers, grown to at least `bytes`.
  char* scratch(size_t bytes);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  int rank_ = 0;
  int size_ = 1;
  std::string failure_;
  void* scratch_ = nullptr;  // device staging of all_gather_host and connect
  size_t scratch_bytes_ = 0;
};

}  // namespace dbsp::comm
