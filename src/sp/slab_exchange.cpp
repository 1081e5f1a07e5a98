// SlabExchange: pack, post, wait, unpack.
#include "sp/slab_exchange.hpp"

#include "sp/stopwatch.hpp"

namespace dbsp::sp {
namespace {

template <class Part>
int64_t message_elements(const std::vector<Part>& parts, int64_t head_dim) {
  int64_t rows = 0;
  for (const Part& part : parts) rows += slab_rows(part.slabs);
  return rows * head_dim;
}

}  // namespace

SlabExchange::SlabExchange(Communicator& comm, int64_t head_dim, std::vector<PeerSends> sends,
                           std::vector<PeerRecvs> recvs, std::vector<float>& send_staging,
                           std::vector<float>& recv_staging, std::string_view operation)
    : head_dim_(head_dim), recvs_(std::move(recvs)) {
  Stopwatch clock;
  std::vector<int64_t> send_offset;
  int64_t send_total = 0, recv_total = 0;
  for (const PeerSends& peer : sends) {
    send_offset.push_back(send_total);
    send_total += message_elements(peer.parts, head_dim);
  }
  for (const PeerRecvs& peer : recvs_) {
    recv_offset_.push_back(recv_total);
    recv_total += message_elements(peer.parts, head_dim);
  }
  if (static_cast<int64_t>(send_staging.size()) < send_total) send_staging.resize(send_total);
  if (static_cast<int64_t>(recv_staging.size()) < recv_total) recv_staging.resize(recv_total);
  recv_staging_ = recv_staging.data();

  std::vector<SendOp> send_ops;
  std::vector<RecvOp> recv_ops;
  for (size_t n = 0; n < sends.size(); ++n) {
    float* begin = send_staging.data() + send_offset[n];
    float* at = begin;
    for (const SendPart& part : sends[n].parts) {
      at += pack_slabs(part.tensor, part.heads, head_dim, part.slabs, at);
    }
    if (at != begin) {
      send_ops.push_back(
          {sends[n].peer, begin, static_cast<int64_t>(sizeof(float)) * (at - begin)});
    }
  }
  for (size_t n = 0; n < recvs_.size(); ++n) {
    const int64_t elements = message_elements(recvs_[n].parts, head_dim);
    if (elements > 0) {
      recv_ops.push_back({recvs_[n].peer, recv_staging_ + recv_offset_[n],
                          static_cast<int64_t>(sizeof(float)) * elements});
    }
  }
  pending_ = comm.start_exchange(send_ops, recv_ops, operation);
  pack_ms_ = clock.elapsed_ms();
}

void SlabExchange::finish() {
  Stopwatch clock;
  pending_->wait();
  wait_ms_ = clock.lap_ms();
  for (size_t n = 0; n < recvs_.size(); ++n) {
    const float* at = recv_staging_ + recv_offset_[n];
    for (const RecvPart& part : recvs_[n].parts) {
      at += unpack_slabs(at, part.heads, head_dim_, part.slabs, part.tensor);
    }
  }
  unpack_ms_ = clock.lap_ms();
}

}  // namespace dbsp::sp
