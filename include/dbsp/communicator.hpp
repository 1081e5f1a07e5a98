// Communicators: the transport under the sequence-parallel runtime (batched point-to-point,
// all-to-all-v, small host-side gathers, sub-communicators for the U x R grid), with a deadline on
// every blocking operation. Backends: MPI (host buffers) and NCCL (device buffers). No MPI or CUDA
// types appear here.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dbsp/partition.hpp"

namespace dbsp {

struct CommOptions {
  // Every blocking operation gives up after this long and throws dbsp::Error naming the operation
  // and the peers it still waited for. A communicator that timed out is unusable afterwards.
  double timeout_seconds = 60.0;
};

// Where the data buffers of exchange() and all_to_all_v() must live.
enum class MemorySpace { host, device };

struct SendOp {
  int peer = 0;
  const void* data = nullptr;
  int64_t bytes = 0;
};
struct RecvOp {
  int peer = 0;
  void* data = nullptr;
  int64_t bytes = 0;
};

// A batch of sends and receives in flight; wait() completes all of them or throws.
class PendingExchange {
 public:
  virtual ~PendingExchange() = default;
  // Blocks until every transfer of the batch is done, at most the communicator's timeout.
  virtual void wait() = 0;
};

class Communicator {
 public:
  explicit Communicator(CommOptions options) : options_(options) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual MemorySpace memory() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl"

  double timeout_seconds() const { return options_.timeout_seconds; }
  void set_timeout(double seconds);

  // Data plane (buffers in memory()). Every rank of the communicator calls start_exchange the same
  // number of times in the same order, with empty lists where it has nothing to move; a batch may
  // hold at most one send and one receive per peer, and may include this rank itself. `operation`
  // names the batch in error messages. Buffers must stay valid until wait() returns.
  virtual std::unique_ptr<PendingExchange> start_exchange(std::span<const SendOp> sends,
                                                          std::span<const RecvOp> recvs,
                                                          std::string_view operation) = 0;
  void exchange(std::span<const SendOp> sends, std::span<const RecvOp> recvs,
                std::string_view operation) {
    start_exchange(sends, recvs, operation)->wait();
  }

  // Bytes [send + send_offset[p], + send_bytes[p]) go to rank p; bytes from rank p land at
  // recv + recv_offset[p]. Zero-byte pairs send no message. Send and receive buffers must not
  // overlap.
  void all_to_all_v(const void* send, std::span<const int64_t> send_bytes,
                    std::span<const int64_t> send_offset, void* recv,
                    std::span<const int64_t> recv_bytes, std::span<const int64_t> recv_offset,
                    std::string_view operation = "all_to_all_v");
  // The same in elements of T.
  template <class T>
  void all_to_all_v(const T* send, std::span<const int64_t> send_counts,
                    std::span<const int64_t> send_displs, T* recv,
                    std::span<const int64_t> recv_counts, std::span<const int64_t> recv_displs,
                    std::string_view operation = "all_to_all_v");

  // Control plane (host memory, small messages): every rank contributes `bytes` bytes and receives
  // size() * bytes, ordered by rank.
  virtual void all_gather_host(const void* send, int64_t bytes, void* recv,
                               std::string_view operation) = 0;
  template <class T>
  std::vector<T> all_gather(const T& value, std::string_view operation = "all_gather");
  void barrier(std::string_view operation = "barrier");

  // Ranks with the same color form a new communicator, ordered by key (ties by rank). Collective.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Sets up the transport to `peers` now, so that the first data batch to one of them does not
  // pay for it: NCCL connects a pair on its first transfer (0.19 s inside the first layer call
  // that moved blocks between the 2 x H200s). Collective: every rank calls it, and rank a names
  // b exactly when b names a; this rank and repeated peers are skipped. One byte each way.
  virtual void connect(std::span<const int> peers, std::string_view operation = "connect");

 protected:
  // connect() through `buffer`: size() + 1 bytes in memory(), byte 0 sent, byte 1 + p received
  // from p.
  void connect_through(std::span<const int> peers, char* buffer, std::string_view operation);
  CommOptions options_;
};

// The sub-communicators of a U x R grid (SPEC 2, partition.hpp): rank p = ring_rank * U +
// ulysses_rank. A Ulysses group is the U ranks with one ring rank; a ring is the R ranks with one
// Ulysses rank. Inside `ulysses` a rank's number is its Ulysses rank, inside `ring` its ring rank.
struct GridCommunicators {
  Grid grid;
  std::unique_ptr<Communicator> ulysses;
  std::unique_ptr<Communicator> ring;

  // Collective over `world`; throws unless world.size() == grid.ranks().
  static GridCommunicators build(Communicator& world, Grid grid);
};

inline int ulysses_rank_of(int rank, Grid grid) { return rank % grid.ulysses; }
inline int ring_rank_of(int rank, Grid grid) { return rank / grid.ulysses; }
inline int grid_rank(int ulysses_rank, int ring_rank, Grid grid) {
  return ring_rank * grid.ulysses + ulysses_rank;
}

// ---- MPI backend (host buffers) ----
bool mpi_available();  // false when dbsp was built without MPI

// Initialises MPI for this process (thread level funneled) and finalises it on destruction, unless
// MPI was already initialised by the caller.
class MpiEnvironment {
 public:
  MpiEnvironment(int& argc, char**& argv);
  MpiEnvironment();  // without the command line (MPI_Init_thread(nullptr, nullptr, ...))
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;
  // Ends every rank of the job. Only for harnesses (CLI, tests) after an unrecoverable error; the
  // library itself never aborts.
  [[noreturn]] static void abort(int exit_code);

 private:
  bool owns_ = false;
};

// A duplicate of MPI_COMM_WORLD; MPI must be initialised.
std::unique_ptr<Communicator> make_mpi_world(const CommOptions& options = {});

// ---- NCCL backend (device buffers on `device`) ----
bool nccl_available();  // false when dbsp was built without NCCL
// All ranks of `bootstrap` (any backend, e.g. MPI) form one NCCL communicator; the NCCL unique id
// travels through bootstrap.all_gather_host.
std::unique_ptr<Communicator> make_nccl_world(Communicator& bootstrap, int device,
                                              const CommOptions& options = {});
// For launchers without MPI: rank 0 writes the unique id to `id_file`, the others wait for it (up
// to the timeout).
std::unique_ptr<Communicator> make_nccl_world_from_file(const std::string& id_file, int rank,
                                                        int size, int device,
                                                        const CommOptions& options = {});

// The GPU this rank should use: the node-local rank (from the launcher's environment:
// OMPI_COMM_WORLD_LOCAL_RANK, MV2_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, LOCAL_RANK; else
// `world_rank`) modulo the visible device count. Throws when there is no GPU or no CUDA build.
int device_for_rank(int world_rank);

// ---- template definitions ----
template <class T>
void Communicator::all_to_all_v(const T* send, std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_displs, T* recv,
                                std::span<const int64_t> recv_counts,
                                std::span<const int64_t> recv_displs, std::string_view operation) {
  auto to_bytes = [](std::span<const int64_t> elements) {
    std::vector<int64_t> bytes(elements.size());
    for (size_t i = 0; i < elements.size(); ++i) {
      bytes[i] = elements[i] * static_cast<int64_t>(sizeof(T));
    }
    return bytes;
  };
  all_to_all_v(static_cast<const void*>(send), to_bytes(send_counts), to_bytes(send_displs),
               static_cast<void*>(recv), to_bytes(recv_counts), to_bytes(recv_displs), operation);
}

template <class T>
std::vector<T> Communicator::all_gather(const T& value, std::string_view operation) {
  static_assert(std::is_trivially_copyable_v<T>, "all_gather moves raw bytes");
  std::vector<T> out(static_cast<size_t>(size()));
  all_gather_host(&value, static_cast<int64_t>(sizeof(T)), out.data(), operation);
  return out;
}

}  // namespace dbsp
