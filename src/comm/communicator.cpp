// Backend-independent parts of Communicator: argument checks of all_to_all_v, the barrier, and the
// U x R grid sub-communicators.
#include "dbsp/communicator.hpp"

#include "dbsp/error.hpp"

namespace dbsp {

void Communicator::set_timeout(double seconds) {
  require(seconds > 0, backend(), " communicator: timeout must be > 0 seconds, got ", seconds);
  options_.timeout_seconds = seconds;
}

void Communicator::all_to_all_v(const void* send, std::span<const int64_t> send_bytes,
                                std::span<const int64_t> send_offset, void* recv,
                                std::span<const int64_t> recv_bytes,
                                std::span<const int64_t> recv_offset, std::string_view operation) {
  const size_t ranks = static_cast<size_t>(size());
  require(send_bytes.size() == ranks && send_offset.size() == ranks && recv_bytes.size() == ranks &&
              recv_offset.size() == ranks,
          operation, ": expected ", ranks, " counts and offsets per side, got ", send_bytes.size(),
          "/", send_offset.size(), " (send) and ", recv_bytes.size(), "/", recv_offset.size(),
          " (recv)");
  std::vector<SendOp> sends;
  std::vector<RecvOp> recvs;
  for (int peer = 0; peer < size(); ++peer) {
    require(send_bytes[peer] >= 0 && recv_bytes[peer] >= 0 && send_offset[peer] >= 0 &&
                recv_offset[peer] >= 0,
            operation, ": negative count or offset for rank ", peer);
    if (send_bytes[peer] > 0) {
      sends.push_back({peer, static_cast<const char*>(send) + send_offset[peer], send_bytes[peer]});
    }
    if (recv_bytes[peer] > 0) {
      recvs.push_back({peer, static_cast<char*>(recv) + recv_offset[peer], recv_bytes[peer]});
    }
  }
  exchange(sends, recvs, operation);
}

void Communicator::connect(std::span<const int> peers, std::string_view operation) {
  require(memory() == MemorySpace::host, backend(), ": ", operation,
          ": this backend must provide connect() for its own memory");
  std::vector<char> buffer(static_cast<size_t>(size()) + 1);
  connect_through(peers, buffer.data(), operation);
}

void Communicator::connect_through(std::span<const int> peers, char* buffer,
                                   std::string_view operation) {
  std::vector<char> named(static_cast<size_t>(size()), 0);
  std::vector<SendOp> sends;
  std::vector<RecvOp> recvs;
  for (int peer : peers) {
    require(peer >= 0 && peer < size(), operation, ": peer ", peer, " outside [0, ", size(), ")");
    if (peer == rank() || named[peer]++) continue;
    sends.push_back({peer, buffer, 1});
    recvs.push_back({peer, buffer + 1 + peer, 1});
  }
  exchange(sends, recvs, operation);
}

void Communicator::barrier(std::string_view operation) {
  const char token = 1;
  std::vector<char> all(static_cast<size_t>(size()));
  all_gather_host(&token, 1, all.data(), operation);
}

GridCommunicators GridCommunicators::build(Communicator& world, Grid grid) {
  require(grid.ulysses >= 1 && grid.ring >= 1 && grid.ranks() == world.size(), "grid ", grid.name(),
          " needs ", grid.ranks(), " ranks; the communicator has ", world.size());
  GridCommunicators comms;
  comms.grid = grid;
  const int u = ulysses_rank_of(world.rank(), grid);
  const int r = ring_rank_of(world.rank(), grid);
  comms.ulysses = world.split(/*color=*/r, /*key=*/u);
  comms.ring = world.split(/*color=*/u, /*key=*/r);
  return comms;
}

}  // namespace dbsp
