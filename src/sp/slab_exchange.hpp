// A batch of slab messages over a Communicator: per peer, slabs of several tensors packed back to
// back into one message, posted at once and unpacked into the receiving tensors on finish().
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "dbsp/communicator.hpp"
#include "sp/slab.hpp"

namespace dbsp::sp {

struct SendPart {
  const float* tensor;  // [*, heads, head_dim]
  int64_t heads;
  std::span<const Slab> slabs;
};
struct RecvPart {
  float* tensor;
  int64_t heads;
  std::span<const Slab> slabs;
};
struct PeerSends {
  int peer;
  std::vector<SendPart> parts;
};
struct PeerRecvs {
  int peer;
  std::vector<RecvPart> parts;
};

class SlabExchange {
 public:
  // Packs every send into `send_staging` and posts the batch (empty messages are left out).
  SlabExchange(Communicator& comm, int64_t head_dim, std::vector<PeerSends> sends,
               std::vector<PeerRecvs> recvs, std::vector<float>& send_staging,
               std::vector<float>& recv_staging, std::string_view operation);
  // Waits for the batch, then unpacks every receive.
  void finish();

  double pack_ms() const { return pack_ms_; }
  double wait_ms() const { return wait_ms_; }
  double unpack_ms() const { return unpack_ms_; }

 private:
  int64_t head_dim_;
  std::vector<PeerRecvs> recvs_;
  std::vector<int64_t> recv_offset_;  // element offset of each receive in the staging buffer
  float* recv_staging_;
  std::unique_ptr<PendingExchange> pending_;
  double pack_ms_ = 0, wait_ms_ = 0, unpack_ms_ = 0;
};

}  // namespace dbsp::sp
