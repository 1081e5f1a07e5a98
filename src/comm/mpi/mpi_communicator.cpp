// MpiCommunicator: every batch is MPI_Irecv/MPI_Isend with a per-batch tag, completed by polling
// MPI_Testsome until a deadline; failures and timeouts name the operation and the pending peers.
#include "comm/mpi/mpi_communicator.hpp"

#include <algorithm>
#include <climits>
#include <sstream>
#include <vector>

#include "comm/mpi/mpi_check.hpp"
#include "comm/poll.hpp"

namespace dbsp::comm {
namespace {

// MPI counts are int: larger messages go as several chunks with the same tag, which MPI keeps in
// order between one pair of ranks.
constexpr int64_t kMaxChunkBytes = int64_t{1} << 30;

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// "rank 2" or, inside a sub-communicator, "rank 2 (world rank 5)".
std::string describe_peer(MPI_Comm comm, int peer) {
  std::ostringstream out;
  out << "rank " << peer;
  int world_size = 0, size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm_size(comm, &size);
  if (size != world_size) {
    MPI_Group group, world_group;
    int world_rank = MPI_UNDEFINED;
    if (MPI_Comm_group(comm, &group) == MPI_SUCCESS &&
        MPI_Comm_group(MPI_COMM_WORLD, &world_group) == MPI_SUCCESS) {
      MPI_Group_translate_ranks(group, 1, &peer, world_group, &world_rank);
      MPI_Group_free(&group);
      MPI_Group_free(&world_group);
    }
    if (world_rank != MPI_UNDEFINED) out << " (world rank " << world_rank << ")";
  }
  return out.str();
}

class MpiPendingExchange final : public PendingExchange {
 public:
  MpiPendingExchange(MpiCommunicator& comm, MPI_Comm mpi_comm, std::string operation)
      : comm_(comm), mpi_comm_(mpi_comm), operation_(std::move(operation)) {}
  ~MpiPendingExchange() override {
    if (!finished_) abandon();
  }

  void post_recv(const RecvOp& op, int tag) {
    for (int64_t done = 0; done < op.bytes; done += kMaxChunkBytes) {
      const int chunk = static_cast<int>(std::min(kMaxChunkBytes, op.bytes - done));
      MPI_Request request;
      DBSP_MPI_CHECK(MPI_Irecv(static_cast<char*>(op.data) + done, chunk, MPI_BYTE, op.peer, tag,
                               mpi_comm_, &request));
      add(request, {op.peer, /*is_send=*/false, op.bytes});
    }
  }
  void post_send(const SendOp& op, int tag) {
    for (int64_t done = 0; done < op.bytes; done += kMaxChunkBytes) {
      const int chunk = static_cast<int>(std::min(kMaxChunkBytes, op.bytes - done));
      MPI_Request request;
      DBSP_MPI_CHECK(MPI_Isend(static_cast<const char*>(op.data) + done, chunk, MPI_BYTE, op.peer,
                               tag, mpi_comm_, &request));
      add(request, {op.peer, /*is_send=*/true, op.bytes});
    }
  }

  void wait() override {
    comm_.require_usable(operation_);
    finished_ = true;
    if (requests_.empty()) return;
    std::vector<int> indices(requests_.size());
    std::vector<MPI_Status> statuses(requests_.size());
    std::string error;
    const bool settled = poll_until(comm_.timeout_seconds(), [&] {
      int completed = 0;
      const int rc = MPI_Testsome(static_cast<int>(requests_.size()), requests_.data(), &completed,
                                  indices.data(), statuses.data());
      if (completed == MPI_UNDEFINED) return true;  // every request already complete
      for (int i = 0; i < completed; ++i) {
        Transfer& t = transfers_[indices[i]];
        if (rc == MPI_ERR_IN_STATUS && statuses[i].MPI_ERROR != MPI_SUCCESS) {
          error = failure_text(t, mpi_error_text(statuses[i].MPI_ERROR));
        }
        t.complete = true;
      }
      if (rc != MPI_SUCCESS && error.empty())
        error = failure_text(pending_text(), mpi_error_text(rc));
      return !error.empty() || std::all_of(transfers_.begin(), transfers_.end(),
                                           [](const Transfer& t) { return t.complete; });
    });
    if (settled && error.empty()) return;
    if (error.empty()) {
      std::ostringstream out;
      out << "mpi: " << operation_ << " on rank " << comm_.rank() << " of " << comm_.size()
          << " timed out after " << comm_.timeout_seconds() << " s waiting for " << pending_text()
          << "; that peer is dead, stuck, or did not enter " << operation_;
      error = out.str();
    }
    comm_.mark_failed(error);
    abandon();
    fail(error);
  }

 private:
  struct Transfer {
    int peer;
    bool is_send;
    int64_t bytes;
    bool complete = false;
  };

  void add(MPI_Request request, Transfer transfer) {
    requests_.push_back(request);
    transfers_.push_back(transfer);
  }

  // "rank 1 (receive of 4096 bytes), rank 3 (send of 4096 bytes)"; each peer and kind once.
  std::string pending_text() const {
    std::ostringstream out;
    std::vector<std::pair<int, bool>> seen;
    for (const Transfer& t : transfers_) {
      if (t.complete) continue;
      if (std::find(seen.begin(), seen.end(), std::pair{t.peer, t.is_send}) != seen.end()) continue;
      seen.emplace_back(t.peer, t.is_send);
      if (seen.size() > 1) out << ", ";
      out << describe_peer(mpi_comm_, t.peer) << " (" << (t.is_send ? "send" : "receive") << " of "
          << t.bytes << " bytes)";
    }
    return seen.empty() ? std::string("no peer") : out.str();
  }
  std::string failure_text(const Transfer& t, const std::string& what) const {
    return failure_text(
        std::string(t.is_send ? "send to " : "receive from ") + describe_peer(mpi_comm_, t.peer),
        what);
  }
  std::string failure_text(const std::string& where, const std::string& what) const {
    std::ostringstream out;
    out << "mpi: " << operation_ << " on rank " << comm_.rank() << " of " << comm_.size()
        << " failed: " << where << ": " << what;
    return out.str();
  }

  // Releases requests that will never be waited for: receives are cancelled first so that no
  // late message lands in a buffer the caller is about to free.
  void abandon() noexcept {
    finished_ = true;
    if (mpi_finalized()) return;
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (requests_[i] != MPI_REQUEST_NULL && !transfers_[i].is_send) MPI_Cancel(&requests_[i]);
    }
    poll_until(0.5, [&] {
      int all_done = 0;
      MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &all_done,
                  MPI_STATUSES_IGNORE);
      return all_done != 0;
    });
    for (MPI_Request& request : requests_) {
      if (request != MPI_REQUEST_NULL) MPI_Request_free(&request);
    }
  }

  MpiCommunicator& comm_;
  MPI_Comm mpi_comm_;
  std::string operation_;
  std::vector<MPI_Request> requests_;
  std::vector<Transfer> transfers_;
  bool finished_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, CommOptions options)
    : Communicator(options), comm_(comm) {
  require(options.timeout_seconds > 0, "mpi communicator: timeout must be > 0 seconds, got ",
          options.timeout_seconds);
  DBSP_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  DBSP_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  DBSP_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  int* tag_upper_bound = nullptr;
  int found = 0;
  DBSP_MPI_CHECK(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_upper_bound, &found));
  if (found && tag_upper_bound != nullptr) tag_limit_ = std::min(*tag_upper_bound, INT_MAX - 1);
}

MpiCommunicator::~MpiCommunicator() {
  // A communicator that failed may have peers in any state; leave it to MPI_Finalize/MPI_Abort.
  if (failure_.empty() && !mpi_finalized()) MPI_Comm_free(&comm_);
}

void MpiCommunicator::require_usable(std::string_view operation) const {
  require(failure_.empty(), "mpi: ", operation,
          " on a communicator that already failed: ", failure_);
}

std::unique_ptr<PendingExchange> MpiCommunicator::start_exchange(std::span<const SendOp> sends,
                                                                 std::span<const RecvOp> recvs,
                                                                 std::string_view operation) {
  require_usable(operation);
  std::vector<char> sends_to(static_cast<size_t>(size_), 0), recvs_from(sends_to);
  for (const SendOp& op : sends) {
    require(op.peer >= 0 && op.peer < size_, "mpi: ", operation, ": send to rank ", op.peer,
            " outside [0, ", size_, ")");
    require(op.bytes >= 0 && (op.bytes == 0 || op.data != nullptr), "mpi: ", operation,
            ": send to rank ", op.peer, " has ", op.bytes, " bytes at ", op.data);
    require(!sends_to[op.peer]++, "mpi: ", operation, ": two sends to rank ", op.peer,
            " in one batch");
  }
  for (const RecvOp& op : recvs) {
    require(op.peer >= 0 && op.peer < size_, "mpi: ", operation, ": receive from rank ", op.peer,
            " outside [0, ", size_, ")");
    require(op.bytes >= 0 && (op.bytes == 0 || op.data != nullptr), "mpi: ", operation,
            ": receive from rank ", op.peer, " has ", op.bytes, " bytes at ", op.data);
    require(!recvs_from[op.peer]++, "mpi: ", operation, ": two receives from rank ", op.peer,
            " in one batch");
  }
  const int tag = static_cast<int>(exchanges_++ % (int64_t{tag_limit_} + 1));
  auto pending = std::make_unique<MpiPendingExchange>(*this, comm_, std::string(operation));
  for (const RecvOp& op : recvs) {
    if (op.bytes > 0) pending->post_recv(op, tag);
  }
  for (const SendOp& op : sends) {
    if (op.bytes > 0) pending->post_send(op, tag);
  }
  return pending;
}

void MpiCommunicator::all_gather_host(const void* send, int64_t bytes, void* recv,
                                      std::string_view operation) {
  require(bytes > 0, "mpi: ", operation, ": all_gather needs at least one byte per rank");
  std::vector<SendOp> sends;
  std::vector<RecvOp> recvs;
  for (int peer = 0; peer < size_; ++peer) {
    sends.push_back({peer, send, bytes});
    recvs.push_back({peer, static_cast<char*>(recv) + peer * bytes, bytes});
  }
  exchange(sends, recvs, operation);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  require(color >= 0, "mpi: split: color must be >= 0, got ", color);
  // MPI_Comm_split cannot time out; a gather first makes sure that every rank is there.
  const int mine[2] = {color, key};
  std::vector<int> all(2 * static_cast<size_t>(size_));
  all_gather_host(mine, sizeof(mine), all.data(), "split");
  MPI_Comm sub = MPI_COMM_NULL;
  DBSP_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  return std::make_unique<MpiCommunicator>(sub, options_);
}

}  // namespace dbsp::comm
