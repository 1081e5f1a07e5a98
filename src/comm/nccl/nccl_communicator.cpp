// NcclCommunicator: grouped ncclSend/ncclRecv batches, all-gathers staged through the device, and
// ncclCommSplit, all on non-blocking communicators so that every wait has a deadline.
#include "comm/nccl/nccl_communicator.hpp"

#include <atomic>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "comm/nccl/nccl_check.hpp"
#include "comm/poll.hpp"

namespace dbsp::comm {
namespace {

ncclConfig_t non_blocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return ncclInProgress instead of blocking the host
  return config;
}

// Waits for a communicator that is still initialising or splitting.
ncclResult_t settle(ncclComm_t comm, double timeout_seconds) {
  ncclResult_t state = ncclInProgress;
  // Exchanges settle here before the layer's work is queued behind them: poll as for GPU work.
  comm::poll_until(
      timeout_seconds,
      [&] {
        if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) state = ncclInternalError;
        return state != ncclInProgress;
      },
      comm::kDevicePollPause);
  return state;
}

// ncclCommAbort ends NCCL's kernels, but a transfer that no kernel runs may keep it waiting (with
// NCCL_P2P_USE_CUDA_MEMCPY=1, peer copies on copy engines never completed on the lent 2 x H200
// machine, and the job hung after its timeout). It runs on its own thread; after
// `grace_seconds` the caller goes on and the thread is left behind, so that a failed job reports
// and exits instead of hanging.
void abort_within(ncclComm_t comm, int device, double grace_seconds) noexcept {
  std::shared_ptr<std::atomic<bool>> finished;
  try {
    finished = std::make_shared<std::atomic<bool>>(false);
    std::thread([comm, device, finished] {
      cudaSetDevice(device);
      ncclCommAbort(comm);
      finished->store(true);
    }).detach();
  } catch (...) {  // no thread to be had: abort here, without the bound
    ncclCommAbort(comm);
    return;
  }
  comm::poll_until(grace_seconds, [&] { return finished->load(); });
}

constexpr double kAbortGraceSeconds = 10;

class NcclPendingExchange final : public PendingExchange {
 public:
  NcclPendingExchange(NcclCommunicator& comm, std::string operation, std::string peers)
      : comm_(comm), operation_(std::move(operation)), peers_(std::move(peers)) {
    DBSP_CUDA_RT_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~NcclPendingExchange() override {
    if (event_) cudaEventDestroy(event_);
  }
  cudaEvent_t event() const { return event_; }
  void wait() override { comm_.wait_event(event_, operation_, peers_); }

 private:
  NcclCommunicator& comm_;
  std::string operation_;
  std::string peers_;
  cudaEvent_t event_ = nullptr;
};

}  // namespace

NcclCommunicator::NcclCommunicator(const ncclUniqueId& id, int rank, int size, int device,
                                   CommOptions options)
    : Communicator(options), device_(device), rank_(rank), size_(size) {
  require(size >= 1 && rank >= 0 && rank < size, "nccl: rank ", rank, " of ", size);
  DBSP_CUDA_RT_CHECK(cudaSetDevice(device_));
  ncclConfig_t config = non_blocking_config();
  DBSP_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size, id, rank, &config));
  const ncclResult_t state = settle(comm_, options.timeout_seconds);
  if (state != ncclSuccess) {
    abort_within(comm_, device_, kAbortGraceSeconds);
    comm_ = nullptr;
    fail("nccl: joining a communicator of ", size, " ranks as rank ", rank, " on device ", device,
         state == ncclInProgress ? " timed out after " : " failed: ",
         state == ncclInProgress
             ? std::to_string(options.timeout_seconds) + " s; some rank did not join"
             : std::string(ncclGetErrorString(state)));
  }
  // A blocking stream: ordered after work the caller queued on the legacy default stream.
  DBSP_CUDA_RT_CHECK(cudaStreamCreate(&stream_));
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int device, CommOptions options)
    : Communicator(options), comm_(comm), device_(device) {
  DBSP_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
  DBSP_NCCL_CHECK(ncclCommCount(comm_, &size_));
  DBSP_CUDA_RT_CHECK(cudaSetDevice(device_));
  DBSP_CUDA_RT_CHECK(cudaStreamCreate(&stream_));
}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(device_);
  if (comm_) {
    bool clean = failure_.empty() && ncclCommFinalize(comm_) != ncclInternalError &&
                 settle(comm_, timeout_seconds()) == ncclSuccess;
    if (clean) {
      ncclCommDestroy(comm_);
    } else {
      abort_within(comm_, device_, kAbortGraceSeconds);
    }
  }
  // After a failure a transfer may still be stuck on the device, and cudaFree waits for all of
  // the device's work: the scratch buffer is left to the process's end instead.
  if (scratch_ && failure_.empty()) cudaFree(scratch_);
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::require_usable(std::string_view operation) const {
  require(failure_.empty() && comm_ != nullptr, "nccl: ", operation,
          " on a communicator that already failed: ", failure_);
}

void NcclCommunicator::abort(const std::string& reason) noexcept {
  if (failure_.empty()) failure_ = reason;
  // Ends kernels that wait for a peer that will never come.
  if (comm_) abort_within(comm_, device_, kAbortGraceSeconds);
  comm_ = nullptr;
}

void NcclCommunicator::abort_with(const std::string& message) {
  abort(message);
  fail(message);
}

void NcclCommunicator::wait_ready(std::string_view operation, const std::string& waiting_for) {
  const ncclResult_t state = settle(comm_, timeout_seconds());
  if (state == ncclSuccess) return;
  std::ostringstream out;
  out << "nccl: " << operation << " on rank " << rank_ << " of " << size_;
  if (state == ncclInProgress) {
    out << " timed out after " << timeout_seconds() << " s waiting for " << waiting_for
        << "; that peer is dead, stuck, or did not enter " << operation;
  } else {
    out << " failed: " << ncclGetErrorString(state) << " (" << ncclGetLastError(comm_)
        << ") while exchanging with " << waiting_for;
  }
  abort_with(out.str());
}

void NcclCommunicator::wait_event(cudaEvent_t event, std::string_view operation,
                                  const std::string& waiting_for) {
  require_usable(operation);
  cudaError_t status = cudaErrorNotReady;
  ncclResult_t async = ncclSuccess;
  comm::poll_until(
      timeout_seconds(),
      [&] {
        status = cudaEventQuery(event);
        if (ncclCommGetAsyncError(comm_, &async) != ncclSuccess) async = ncclInternalError;
        return status != cudaErrorNotReady || (async != ncclSuccess && async != ncclInProgress);
      },
      comm::kDevicePollPause);
  if (status == cudaSuccess) return;
  std::ostringstream out;
  out << "nccl: " << operation << " on rank " << rank_ << " of " << size_;
  if (async != ncclSuccess && async != ncclInProgress) {
    out << " failed: " << ncclGetErrorString(async) << " (" << ncclGetLastError(comm_)
        << ") while exchanging with " << waiting_for;
  } else if (status == cudaErrorNotReady) {
    out << " timed out after " << timeout_seconds() << " s waiting for " << waiting_for
        << "; that peer is dead, stuck, or did not enter " << operation;
  } else {
    out << " failed on the device: " << cudaGetErrorString(status) << " while exchanging with "
        << waiting_for;
  }
  abort_with(out.str());
}

std::unique_ptr<PendingExchange> NcclCommunicator::start_exchange(std::span<const SendOp> sends,
                                                                  std::span<const RecvOp> recvs,
                                                                  std::string_view operation) {
  require_usable(operation);
  std::vector<char> sends_to(static_cast<size_t>(size_), 0), recvs_from(sends_to);
  std::ostringstream peers;
  bool any = false;
  auto name_peer = [&](int peer, const char* kind, int64_t bytes) {
    peers << (any ? ", " : "") << "rank " << peer << " (" << kind << " of " << bytes << " bytes)";
    any = true;
  };
  for (const SendOp& op : sends) {
    require(op.peer >= 0 && op.peer < size_ && op.bytes >= 0, "nccl: ", operation,
            ": send to rank ", op.peer, " of ", op.bytes, " bytes outside [0, ", size_, ")");
    require(!sends_to[op.peer]++, "nccl: ", operation, ": two sends to rank ", op.peer,
            " in one batch");
    if (op.bytes > 0) name_peer(op.peer, "send", op.bytes);
  }
  for (const RecvOp& op : recvs) {
    require(op.peer >= 0 && op.peer < size_ && op.bytes >= 0, "nccl: ", operation,
            ": receive from rank ", op.peer, " of ", op.bytes, " bytes outside [0, ", size_, ")");
    require(!recvs_from[op.peer]++, "nccl: ", operation, ": two receives from rank ", op.peer,
            " in one batch");
    if (op.bytes > 0) name_peer(op.peer, "receive", op.bytes);
  }
  auto pending = std::make_unique<NcclPendingExchange>(*this, std::string(operation),
                                                       any ? peers.str() : "no peer");
  DBSP_CUDA_RT_CHECK(cudaSetDevice(device_));
  if (any) {
    DBSP_NCCL_CHECK(ncclGroupStart());
    for (const RecvOp& op : recvs) {
      if (op.bytes > 0) {
        DBSP_NCCL_CHECK(
            ncclRecv(op.data, static_cast<size_t>(op.bytes), ncclUint8, op.peer, comm_, stream_));
      }
    }
    for (const SendOp& op : sends) {
      if (op.bytes > 0) {
        DBSP_NCCL_CHECK(
            ncclSend(op.data, static_cast<size_t>(op.bytes), ncclUint8, op.peer, comm_, stream_));
      }
    }
    DBSP_NCCL_CHECK(ncclGroupEnd());
    // The first transfer between two ranks sets up the connection while the call is in progress.
    wait_ready(operation, peers.str());
  }
  DBSP_CUDA_RT_CHECK(cudaEventRecord(pending->event(), stream_));
  return pending;
}

void NcclCommunicator::all_gather_host(const void* send, int64_t bytes, void* recv,
                                       std::string_view operation) {
  require_usable(operation);
  require(bytes > 0, "nccl: ", operation, ": all_gather needs at least one byte per rank");
  DBSP_CUDA_RT_CHECK(cudaSetDevice(device_));
  const size_t total = static_cast<size_t>(bytes) * static_cast<size_t>(size_);
  char* slots = scratch(total);
  char* mine = slots + static_cast<size_t>(bytes) * static_cast<size_t>(rank_);
  DBSP_CUDA_RT_CHECK(
      cudaMemcpyAsync(mine, send, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, stream_));
  DBSP_NCCL_CHECK(
      ncclAllGather(mine, slots, static_cast<size_t>(bytes), ncclUint8, comm_, stream_));
  wait_ready(operation, "every rank of the all-gather");
  cudaEvent_t done = nullptr;
  DBSP_CUDA_RT_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  DBSP_CUDA_RT_CHECK(cudaEventRecord(done, stream_));
  try {
    wait_event(done, operation, "every rank of the all-gather");
  } catch (...) {
    cudaEventDestroy(done);
    throw;
  }
  cudaEventDestroy(done);
  DBSP_CUDA_RT_CHECK(cudaMemcpy(recv, slots, total, cudaMemcpyDeviceToHost));
}

char* NcclCommunicator::scratch(size_t bytes) {
  if (scratch_bytes_ < bytes) {
    if (scratch_) DBSP_CUDA_RT_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
    DBSP_CUDA_RT_CHECK(cudaMalloc(&scratch_, bytes));
    scratch_bytes_ = bytes;
  }
  return static_cast<char*>(scratch_);
}

void NcclCommunicator::connect(std::span<const int> peers, std::string_view operation) {
  require_usable(operation);
  DBSP_CUDA_RT_CHECK(cudaSetDevice(device_));
  connect_through(peers, scratch(static_cast<size_t>(size_) + 1), operation);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  require_usable("split");
  require(color >= 0, "nccl: split: color must be >= 0, got ", color);
  DBSP_CUDA_RT_CHECK(cudaSetDevice(device_));
  ncclConfig_t config = non_blocking_config();
  ncclComm_t sub = nullptr;
  DBSP_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, &config));
  wait_ready("split", "every rank of the communicator");
  if (sub != nullptr && settle(sub, timeout_seconds()) != ncclSuccess) {
    abort_within(sub, device_, kAbortGraceSeconds);
    abort_with("nccl: split on rank " + std::to_string(rank_) +
               ": the new communicator did not become ready within the timeout");
  }
  require(sub != nullptr, "nccl: split returned no communicator for color ", color);
  return std::unique_ptr<Communicator>(new NcclCommunicator(sub, device_, options_));
}

}  // namespace dbsp::comm
