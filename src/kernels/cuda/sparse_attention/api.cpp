// Public entry of the sparse attention kernels (dbsp/cuda_attention.hpp): input checks, the
// device workspace, kernel selection and the persistent-grid launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/dispatch.hpp"
#include "kernels/cuda/sparse_attention/launch.hpp"
#include "kernels/cuda/sparse_attention/params.hpp"
#include "kernels/cuda/sparse_attention/schedule.hpp"

namespace dbsp::cuda {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::bf16:
      return "bf16";
    case DType::fp16:
      return "fp16";
    case DType::fp32:
      return "fp32";
  }
  return "unknown";
}

size_t element_bytes(DType dtype) { return dtype == DType::fp32 ? 4 : 2; }

const char* to_string(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::automatic:
      return "automatic";
    case AttentionKernel::mma_sync:
      return "mma_sync";
    case AttentionKernel::wgmma:
      return "wgmma";
    case AttentionKernel::warp_specialized:
      return "warp_specialized";
  }
  return "unknown";
}

std::string unsupported_reason(const AttentionShape& shape, const DeviceMask& mask) {
  if (shape.dtype != DType::bf16 && shape.dtype != DType::fp16)
    return std::string("dtype ") + to_string(shape.dtype) + " (kernels take bf16 or fp16)";
  if (shape.head_dim != 64 && shape.head_dim != 128)
    return "head_dim " + std::to_string(shape.head_dim) + " (kernels take 64 or 128)";
  if (shape.batch < 1 || shape.heads < 1 || shape.seq_q < 1 || shape.seq_k < 1)
    return "empty shape (batch, heads, seq_q and seq_k must be positive)";
  if (shape.seq_q * shape.heads * shape.head_dim >= (int64_t{1} << 31) ||
      shape.seq_k * shape.heads * shape.head_dim >= (int64_t{1} << 31))
    return "2^31 or more elements per batch entry of Q or K (32-bit row offsets)";
  if (mask.block_q < 64 || mask.block_q % 64 != 0)
    return "block_q " + std::to_string(mask.block_q) + " (a multiple of 64 is needed)";
  if (!mask.dense) {
    const int k_tiles = mask.block_k / 64;
    if (mask.has_blocks() && (mask.block_k % 64 != 0 || k_tiles < 1 || (k_tiles & (k_tiles - 1))))
      return "block_k " + std::to_string(mask.block_k) + " (64 times a power of two is needed)";
    if (mask.has_blocks() && (mask.block_row_offset == nullptr || mask.kv_index == nullptr))
      return "block lists with kv_count but no block_row_offset or kv_index";
    if (mask.has_keys() && mask.key_index == nullptr)
      return "key lists with key_row_offset but no key_index";
    if (!mask.has_blocks() && !mask.has_keys())
      return "a sparse mask with neither block lists nor key lists (set dense for all keys)";
    if (mask.q_blocks < 1) return "a sparse mask with q_blocks < 1";
  }
  return {};
}

namespace {

using detail::SparseAttentionParams;

int uniform_blocks(int64_t tokens, int block) {
  return static_cast<int>((tokens + block - 1) / block);
}

// Calls f.template operator()<kFamily, kElement, kHeadDim>() for the run-time choice.
template <class F>
auto dispatch_kernel(AttentionKernel kernel, DType dtype, int head_dim, F&& f) {
  return DBSP_DISPATCH_ELEMENT(dtype, kElement, [&] {
    return DBSP_DISPATCH_HEAD_DIM(head_dim, kHeadDim, [&] {
      if (kernel == AttentionKernel::wgmma)
        return f.template operator()<detail::KernelFamily::sm90, kElement, kHeadDim>();
      if (kernel == AttentionKernel::warp_specialized)
        return f.template operator()<detail::KernelFamily::sm90_ws, kElement, kHeadDim>();
      return f.template operator()<detail::KernelFamily::sm80, kElement, kHeadDim>();
    });
  });
}

}  // namespace

struct SparseAttention::Impl {
  AttentionShape shape;
  int block_q = 64;
  int q_blocks = 0;
  int num_items = 0;
  int sm_count = 0;
  int reserved_sms = 0;  // SMs left out of the persistent grid (reserve_sms)
  // The family for masks without key lists (block lists, dense) and for masks with key lists,
  // with their occupancies, read once. They differ only for AttentionKernel::automatic.
  AttentionKernel block_kernel = AttentionKernel::mma_sync;
  AttentionKernel key_kernel = AttentionKernel::mma_sync;
  int block_ctas_per_sm = 0;
  int key_ctas_per_sm = 0;
  detail::WorkScheduler scheduler;
  bool planned = false;
  const int32_t* planned_counts = nullptr;  // identifies the mask the schedule was built for
  const int64_t* planned_keys = nullptr;
  bool pair_rows = false;  // pair_query_rows(); off: measured slower (BENCHMARKS.md, v6)
  bool planned_pairs = false;
  bool split_rows = false;  // split_long_rows()
  int min_split_blocks = SparseAttention::kMinSplitBlocks;
  bool planned_splits = false;

  // Whether run() / plan() split this mask's long rows (warp-specialised kernel, unpaired block
  // lists).
  bool splits(const DeviceMask& mask) const {
    return split_rows && block_kernel == AttentionKernel::warp_specialized && !mask.dense &&
           mask.has_blocks() && !mask.has_keys() && !pairs(mask);
  }

  // Consumer warpgroups working at once: two per CTA of the persistent grid.
  int consumer_slots() const {
    return 2 * block_ctas_per_sm * std::max(1, sm_count - reserved_sms);
  }

  // Whether run() / plan() pair adjacent rows for this mask (warp-specialised kernel, block lists
  // of uniform 64 x 64 blocks).
  bool pairs(const DeviceMask& mask) const {
    return pair_rows && block_kernel == AttentionKernel::warp_specialized && !mask.dense &&
           mask.has_blocks() && !mask.has_keys() && block_q == 64 && mask.block_k == 64 &&
           mask.q_block_start == nullptr;
  }

  SparseAttentionParams params(const DeviceMask& mask, const void* q, const void* k, const void* v,
                               void* out, float* lse) const {
    SparseAttentionParams p;
    p.q = q;
    p.k = k;
    p.v = v;
    p.out = out;
    p.lse = lse;
    p.batch = static_cast<int>(shape.batch);
    p.heads = shape.heads;
    p.seq_q = static_cast<int>(shape.seq_q);
    p.seq_k = static_cast<int>(shape.seq_k);
    const double scale = shape.scale > 0 ? shape.scale : 1.0 / std::sqrt(double(shape.head_dim));
    p.scale_log2 = static_cast<float>(scale * std::numbers::log2e);
    p.q_blocks = q_blocks;
    p.block_q = block_q;
    p.tiles_per_q_block = block_q / 64;
    p.dense = mask.dense;
    p.block_k = mask.block_k;
    p.tiles_per_k_block = mask.block_k / 64;
    while ((1 << p.k_tile_shift) < p.tiles_per_k_block) ++p.k_tile_shift;
    p.k_blocks = uniform_blocks(shape.seq_k, mask.block_k);
    if (!mask.dense) {
      p.kv_count = mask.kv_count;
      p.block_row_offset = mask.block_row_offset;
      p.kv_index = mask.kv_index;
      p.key_row_offset = mask.key_row_offset;
      p.key_index = mask.key_index;
      p.key_count = mask.key_count;
    }
    p.q_block_start = mask.q_block_start;
    p.k_block_start = mask.k_block_start;
    p.num_items = num_items;
    if (pairs(mask)) {
      p.pair_rows = true;
      p.num_items = static_cast<int>(shape.batch * shape.heads * ((q_blocks + 1) / 2));
    }
    p.work_counter = scheduler.counter();
    if (splits(mask)) scheduler.attach_splits(p);
    return p;
  }

  void check(const DeviceMask& mask) const {
    const std::string reason = unsupported_reason(shape, mask);
    require(reason.empty(), "sparse attention does not support ", reason);
    require(mask.block_q == block_q, "mask block_q ", mask.block_q, " but the plan was built for ",
            block_q);
    require(mask.dense || mask.q_blocks == q_blocks, "mask has ", mask.q_blocks,
            " query blocks per head, the plan ", q_blocks);
  }
};

SparseAttention::SparseAttention(const AttentionShape& shape, int block_q, int q_blocks,
                                 AttentionKernel kernel)
    : impl_(std::make_unique<Impl>()) {
  DeviceMask probe;
  probe.dense = true;
  probe.block_q = block_q;
  const std::string reason = unsupported_reason(shape, probe);
  require(reason.empty(), "sparse attention does not support ", reason);
  impl_->shape = shape;
  impl_->block_q = block_q;
  require(q_blocks >= 0, "q_blocks must be 0 (uniform) or positive, got ", q_blocks);
  impl_->q_blocks = q_blocks > 0 ? q_blocks : uniform_blocks(shape.seq_q, block_q);
  const int64_t items = shape.batch * shape.heads * impl_->q_blocks * int64_t{block_q / 64};
  require(items < (int64_t{1} << 31), "too many work items (", items, "): batch * heads * ",
          "query tiles must stay below 2^31");
  impl_->num_items = static_cast<int>(items);
  int device = 0;
  DBSP_CUDA_CHECK(cudaGetDevice(&device));
  DBSP_CUDA_CHECK(cudaDeviceGetAttribute(&impl_->sm_count, cudaDevAttrMultiProcessorCount, device));
  int major = 0;
  DBSP_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  // Measured on an H100 (BENCHMARKS.md, kernels v5): the warp-specialised family is fastest for
  // dense and block-sparse masks, the wgmma family for key lists (there all 128 consumer threads
  // issue the row gathers; the warp-specialised kernel's two producer warps cannot keep up).
  const bool automatic = kernel == AttentionKernel::automatic;
  const AttentionKernel fallback = major == 9 ? AttentionKernel::wgmma : AttentionKernel::mma_sync;
  impl_->block_kernel = automatic && major == 9 ? AttentionKernel::warp_specialized
                        : automatic             ? fallback
                                                : kernel;
  impl_->key_kernel = automatic ? fallback : kernel;
  require(automatic || kernel == AttentionKernel::mma_sync || major == 9, "the ", to_string(kernel),
          " attention kernel needs a compute capability 9.x (Hopper) device, this one is ", major,
          ".x");
  const auto occupancy = [&](AttentionKernel family) {
    const int ctas = dispatch_kernel(
        family, shape.dtype, shape.head_dim,
        []<detail::KernelFamily kFamily, detail::ElementKind kElement, int kHeadDim>() {
          return detail::sparse_attention_ctas_per_sm<kFamily, kElement, kHeadDim>();
        });
    require(ctas > 0, "the ", to_string(family), " attention kernel does not fit on this device");
    return ctas;
  };
  impl_->block_ctas_per_sm = occupancy(impl_->block_kernel);
  impl_->key_ctas_per_sm = impl_->key_kernel == impl_->block_kernel ? impl_->block_ctas_per_sm
                                                                    : occupancy(impl_->key_kernel);
  impl_->scheduler =
      detail::WorkScheduler(impl_->num_items, static_cast<int>(shape.batch * shape.heads));
}

SparseAttention::~SparseAttention() = default;
SparseAttention::SparseAttention(SparseAttention&&) noexcept = default;
SparseAttention& SparseAttention::operator=(SparseAttention&&) noexcept = default;

const AttentionShape& SparseAttention::shape() const { return impl_->shape; }
AttentionKernel SparseAttention::kernel() const { return impl_->block_kernel; }
AttentionKernel SparseAttention::kernel_for(const DeviceMask& mask) const {
  return !mask.dense && mask.has_keys() ? impl_->key_kernel : impl_->block_kernel;
}
int SparseAttention::ctas_per_sm() const { return impl_->block_ctas_per_sm; }

void SparseAttention::pair_query_rows(bool enable) { impl_->pair_rows = enable; }
bool SparseAttention::pairs_query_rows(const DeviceMask& mask) const { return impl_->pairs(mask); }

void SparseAttention::split_long_rows(bool enable, int min_blocks) {
  require(min_blocks >= 2, "split_long_rows: a split row needs at least 2 key blocks, got ",
          min_blocks);
  impl_->split_rows = enable;
  impl_->min_split_blocks = min_blocks;
  if (!enable || impl_->block_kernel != AttentionKernel::warp_specialized) return;
  // A split row holds more than 1 / kPiecesPerSlot of a consumer's share (schedule.hpp), so no
  // more rows split than kPiecesPerSlot per consumer of the whole device.
  const int most =
      detail::WorkScheduler::kPiecesPerSlot * 2 * impl_->block_ctas_per_sm * impl_->sm_count;
  impl_->scheduler.enable_splits(std::min(most, impl_->num_items), impl_->shape.head_dim);
}

bool SparseAttention::splits_long_rows(const DeviceMask& mask) const { return impl_->splits(mask); }

void SparseAttention::reserve_sms(int sms) {
  require(sms >= 0, "reserve_sms: SM count must be >= 0, got ", sms);
  impl_->reserved_sms = sms;
}

void SparseAttention::plan(const DeviceMask& mask, void* stream) {
  impl_->check(mask);
  impl_->planned = false;
  if (mask.dense) return;
  impl_->scheduler.build(impl_->params(mask, nullptr, nullptr, nullptr, nullptr, nullptr),
                         static_cast<cudaStream_t>(stream), impl_->consumer_slots(),
                         impl_->min_split_blocks);
  impl_->planned = true;
  impl_->planned_counts = mask.kv_count;
  impl_->planned_keys = mask.key_row_offset;
  impl_->planned_pairs = impl_->pairs(mask);
  impl_->planned_splits = impl_->splits(mask);
}

void SparseAttention::run(const DeviceMask& mask, const void* q, const void* k, const void* v,
                          void* out, float* lse, void* stream) {
  impl_->check(mask);
  require(q != nullptr && k != nullptr && v != nullptr && out != nullptr,
          "sparse attention needs device pointers for q, k, v and out");
  SparseAttentionParams p = impl_->params(mask, q, k, v, out, lse);
  if (!mask.dense) {
    require(impl_->planned && impl_->planned_counts == mask.kv_count &&
                impl_->planned_keys == mask.key_row_offset &&
                impl_->planned_pairs == impl_->pairs(mask) &&
                impl_->planned_splits == impl_->splits(mask),
            "run() with a sparse mask needs plan() of the same mask first");
    p.work_order = impl_->scheduler.order();
  }
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  DBSP_CUDA_CHECK(cudaMemsetAsync(p.work_counter, 0, sizeof(int), cuda_stream));
  const float scale = static_cast<float>(p.scale_log2 / std::numbers::log2e);
  const AttentionKernel family = kernel_for(mask);
  const int ctas_per_sm =
      family == impl_->block_kernel ? impl_->block_ctas_per_sm : impl_->key_ctas_per_sm;
  const int sms = std::max(1, impl_->sm_count - impl_->reserved_sms);
  const int grid = std::max(1, std::min(detail::total_items(p), ctas_per_sm * sms));
  dispatch_kernel(family, impl_->shape.dtype, impl_->shape.head_dim,
                  [&]<detail::KernelFamily kFamily, detail::ElementKind kElement, int kHeadDim>() {
                    detail::launch_sparse_attention<kFamily, kElement, kHeadDim>(p, scale, grid,
                                                                                 cuda_stream);
                  });
  impl_->scheduler.merge_splits(p, impl_->shape.dtype == DType::fp16, cuda_stream);
}

}  // namespace dbsp::cuda
