// MaskEstimator (dbsp/cuda_attention.hpp): owns the pooled blocks, the score matrix and the
// output lists, and launches pooling, scoring and top-p selection on one stream.
#include <cuda_runtime.h>

#include <cmath>

#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "kernels/cuda/common/device_buffer.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"

namespace dbsp::cuda {

using detail::DeviceBuffer;

struct MaskEstimator::Impl {
  int64_t seq_q = 0;
  int64_t seq_k = 0;
  int heads = 0;
  int head_dim = 0;
  DType dtype = DType::bf16;
  EstimateConfig config;
  int q_blocks = 0;
  int k_blocks = 0;
  DeviceBuffer pooled_q, pooled_k, scores, kv_count, block_row_offset, kv_index;
  DeviceBuffer fine_rows, key_count, key_row_offset;  // allocated by the first estimate_fine()
};

MaskEstimator::MaskEstimator(int64_t seq_q, int64_t seq_k, int heads, int head_dim, DType dtype,
                             EstimateConfig config)
    : impl_(std::make_unique<Impl>()) {
  require(seq_q > 0 && seq_k > 0 && heads > 0 && head_dim > 0,
          "mask estimation needs a non-empty shape, got seq_q ", seq_q, ", seq_k ", seq_k,
          ", heads ", heads, ", head_dim ", head_dim);
  require(config.block_q > 0 && config.block_k > 0, "mask estimation needs positive blocks, got ",
          config.block_q, " x ", config.block_k);
  require(config.sink_blocks.size() <= 8, "mask estimation takes at most 8 sink blocks, got ",
          config.sink_blocks.size());
  Impl& s = *impl_;
  s.seq_q = seq_q;
  s.seq_k = seq_k;
  s.heads = heads;
  s.head_dim = head_dim;
  s.dtype = dtype;
  s.config = std::move(config);
  s.q_blocks = static_cast<int>((seq_q + s.config.block_q - 1) / s.config.block_q);
  s.k_blocks = static_cast<int>((seq_k + s.config.block_k - 1) / s.config.block_k);
  require(s.k_blocks <= detail::kMaxTopPKeyBlocks, "mask estimation handles up to ",
          detail::kMaxTopPKeyBlocks, " key blocks, got ", s.k_blocks);
  const size_t rows = static_cast<size_t>(heads) * s.q_blocks;
  s.pooled_q = DeviceBuffer(rows * head_dim * sizeof(float));
  s.pooled_k = DeviceBuffer(static_cast<size_t>(heads) * s.k_blocks * head_dim * sizeof(float));
  s.scores = DeviceBuffer(rows * s.k_blocks * sizeof(float));
  s.kv_count = DeviceBuffer(rows * sizeof(int32_t));
  s.block_row_offset = DeviceBuffer(rows * sizeof(int64_t));
  s.kv_index = DeviceBuffer(rows * s.k_blocks * sizeof(int32_t));
}

MaskEstimator::~MaskEstimator() = default;
MaskEstimator::MaskEstimator(MaskEstimator&&) noexcept = default;
MaskEstimator& MaskEstimator::operator=(MaskEstimator&&) noexcept = default;

void MaskEstimator::estimate(const void* q, const void* k, void* stream) {
  require(q != nullptr && k != nullptr, "mask estimation needs device pointers for q and k");
  const Impl& s = *impl_;
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  detail::launch_block_mean(s.dtype, q, s.seq_q, s.heads, s.head_dim, s.config.block_q, s.q_blocks,
                            s.pooled_q.get<float>(), cuda_stream);
  detail::launch_block_mean(s.dtype, k, s.seq_k, s.heads, s.head_dim, s.config.block_k, s.k_blocks,
                            s.pooled_k.get<float>(), cuda_stream);
  const double scale = s.config.scale > 0 ? s.config.scale : 1.0 / std::sqrt(double(s.head_dim));
  detail::launch_block_scores(s.pooled_q.get<float>(), s.pooled_k.get<float>(), s.heads, s.q_blocks,
                              s.k_blocks, s.head_dim, static_cast<float>(scale),
                              s.scores.get<float>(), cuda_stream);
  detail::TopPConfig top_p;
  top_p.heads = s.heads;
  top_p.q_blocks = s.q_blocks;
  top_p.k_blocks = s.k_blocks;
  top_p.block_q = s.config.block_q;
  top_p.block_k = s.config.block_k;
  top_p.seq_k = s.seq_k;
  top_p.tau = static_cast<float>(s.config.tau);
  top_p.keep_diagonal = s.config.keep_diagonal && s.seq_q == s.seq_k;  // self-attention only
  top_p.sink_count = static_cast<int>(s.config.sink_blocks.size());
  for (int i = 0; i < top_p.sink_count; ++i) top_p.sinks[i] = s.config.sink_blocks[i];
  detail::launch_top_p_rows(top_p, s.scores.get<float>(), s.kv_count.get<int32_t>(),
                            s.block_row_offset.get<int64_t>(), s.kv_index.get<int32_t>(),
                            cuda_stream);
}

DeviceMask MaskEstimator::mask() const {
  DeviceMask mask;
  mask.block_q = impl_->config.block_q;
  mask.block_k = impl_->config.block_k;
  mask.q_blocks = impl_->q_blocks;
  mask.kv_count = impl_->kv_count.get<int32_t>();
  mask.block_row_offset = impl_->block_row_offset.get<int64_t>();
  mask.kv_index = impl_->kv_index.get<int32_t>();
  return mask;
}

void MaskEstimator::estimate_fine(const void* q, const void* k, void* stream) {
  require(q != nullptr && k != nullptr, "mask estimation needs device pointers for q and k");
  Impl& s = *impl_;
  require(s.seq_k < (int64_t{1} << 31), "fine estimation needs seq_k < 2^31, got ", s.seq_k);
  const size_t rows = static_cast<size_t>(s.heads) * s.q_blocks;
  if (s.fine_rows.bytes() == 0) {
    s.fine_rows = DeviceBuffer(rows * s.seq_k * sizeof(float));
    s.key_count = DeviceBuffer(rows * sizeof(int32_t));
    s.key_row_offset = DeviceBuffer(rows * sizeof(int64_t));
  }
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  detail::launch_block_mean(s.dtype, q, s.seq_q, s.heads, s.head_dim, s.config.block_q, s.q_blocks,
                            s.pooled_q.get<float>(), cuda_stream);
  const double scale = s.config.scale > 0 ? s.config.scale : 1.0 / std::sqrt(double(s.head_dim));
  detail::launch_fine_scores(s.dtype, s.pooled_q.get<float>(), k, s.heads, s.q_blocks, s.seq_k,
                             s.head_dim, static_cast<float>(scale), s.fine_rows.get<float>(),
                             cuda_stream);
  detail::FineTopPConfig top_p;
  top_p.heads = s.heads;
  top_p.q_blocks = s.q_blocks;
  top_p.seq_q = static_cast<int>(s.seq_q);
  top_p.seq_k = static_cast<int>(s.seq_k);
  top_p.block_q = s.config.block_q;
  top_p.block_k = s.config.block_k;
  top_p.tau = static_cast<float>(s.config.tau);
  top_p.keep_diagonal = s.config.keep_diagonal && s.seq_q == s.seq_k;
  top_p.sink_count = static_cast<int>(s.config.sink_blocks.size());
  for (int i = 0; i < top_p.sink_count; ++i) top_p.sinks[i] = s.config.sink_blocks[i];
  detail::launch_fine_top_p_rows(top_p, s.fine_rows.get<float>(), s.key_count.get<int32_t>(),
                                 s.key_row_offset.get<int64_t>(), cuda_stream);
}

DeviceMask MaskEstimator::fine_mask() const {
  require(impl_->fine_rows.bytes() > 0, "fine_mask() needs an estimate_fine() first");
  DeviceMask mask;
  mask.block_q = impl_->config.block_q;
  mask.q_blocks = impl_->q_blocks;
  mask.key_row_offset = impl_->key_row_offset.get<int64_t>();
  mask.key_index = impl_->fine_rows.get<int32_t>();
  mask.key_count = impl_->key_count.get<int32_t>();
  return mask;
}

void MaskEstimator::set_tau(double tau) {
  require(tau > 0.0 && tau <= 1.0, "mask estimation needs tau in (0, 1], got ", tau);
  impl_->config.tau = tau;
}

int MaskEstimator::q_blocks() const { return impl_->q_blocks; }
int MaskEstimator::k_blocks() const { return impl_->k_blocks; }

}  // namespace dbsp::cuda
