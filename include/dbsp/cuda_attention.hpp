// Hopper (sm_90a) attention on the GPU: block-sparse, fine-grained (FG-Attn) and dense forward
// attention with O and LSE, the LSE merge of partial results, and mask estimation from Q/K.
// Plain C++: device pointers are passed as typed or void pointers and the CUDA stream as void*
// (a cudaStream_t; nullptr is the default stream). Every call is asynchronous on its stream;
// plan() and run() allocate nothing and can be captured in a CUDA graph.
// Layouts (as the CPU kernels in attention.hpp): Q/O [batch, seq_q, heads, head_dim], K/V
// [batch, seq_k, heads, head_dim], LSE [batch, heads, seq_q] fp32, natural log. A query row with
// no kept key gives O = 0 and LSE = -inf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dbsp::cuda {

enum class DType { bf16, fp16, fp32 };
const char* to_string(DType dtype);
size_t element_bytes(DType dtype);

struct AttentionShape {
  int64_t batch = 1;
  int64_t seq_q = 0;
  int64_t seq_k = 0;
  int heads = 1;
  int head_dim = 128;         // 64 or 128
  DType dtype = DType::bf16;  // bf16 or fp16 (fp32 accumulation inside)
  double scale = 0.0;         // 0: 1/sqrt(head_dim)
};

// Which keys each mask row attends to, as device arrays. Row r = head * q_blocks + q_block; one
// mask serves every batch entry. A row may carry key blocks, single keys (FG-Attn), or both; the
// two sets must be disjoint (a key listed twice is counted twice).
struct DeviceMask {
  int block_q = 64;    // queries per mask row; a multiple of 64
  int q_blocks = 0;    // rows per head
  bool dense = false;  // every key for every row; the lists below are ignored
  // Block lists: kv_index[block_row_offset[r] ...] holds kv_count[r] key blocks of block_k tokens
  // (any order). block_row_offset needs only one entry per row, so a fixed-capacity layout
  // (offset r * k_blocks, as the estimator writes) works as well as a packed CSR.
  int block_k = 64;  // a multiple of 64
  const int32_t* kv_count = nullptr;
  const int64_t* block_row_offset = nullptr;
  const int32_t* kv_index = nullptr;
  // Key lists: key_index[key_row_offset[r] .. key_row_offset[r + 1]) are key tokens (indices
  // into the local K/V), sorted ascending for the best gather locality. With key_count set, row r
  // holds key_count[r] keys from key_row_offset[r] instead (fixed-capacity rows, as the fine
  // estimator writes them; then key_row_offset needs one entry per row).
  const int64_t* key_row_offset = nullptr;
  const int32_t* key_index = nullptr;
  const int32_t* key_count = nullptr;
  // Optional token starts of each block (q_blocks + 1 and k_blocks + 1 entries) for non-uniform
  // layouts such as permuted db-SP shards; null means uniform blocks with a short last block.
  const int64_t* q_block_start = nullptr;
  const int64_t* k_block_start = nullptr;

  bool has_blocks() const { return kv_count != nullptr; }
  bool has_keys() const { return key_row_offset != nullptr; }
};

// Empty when the kernels support this shape and mask; otherwise what is missing. The same check
// guards every call, so support and dispatch cannot drift.
std::string unsupported_reason(const AttentionShape& shape, const DeviceMask& mask);

// Kernel family: mma_sync (FlashAttention-2 style, ldmatrix + mma.sync), wgmma (Hopper
// warpgroup MMA reading K/V from shared memory, sm_90a) or warp_specialized (wgmma consumers fed
// by producer warps through TMA / cp.async and mbarrier rings, sm_90a). automatic picks, per
// mask, the family measured fastest on the device: on compute capability 9.x warp_specialized
// for dense and block-list masks and wgmma for masks with key lists; mma_sync elsewhere.
enum class AttentionKernel { automatic, mma_sync, wgmma, warp_specialized };
const char* to_string(AttentionKernel kernel);

// Forward attention over a DeviceMask. The constructor allocates the device workspace for one
// shape; plan() orders the work items (batch, head, 64-query tile) on the device from the mask's
// row lengths (heads by descending work, rows longest first inside a head) so that long rows do
// not leave SMs idle and one head's K/V stays hot in L2; run() launches the persistent kernel.
class SparseAttention {
 public:
  // q_blocks: mask rows per head; 0 means uniform blocks (ceil(seq_q / block_q)). Pass the
  // layout's block count for non-uniform layouts (DeviceMask::q_block_start).
  SparseAttention(const AttentionShape& shape, int block_q = 64, int q_blocks = 0,
                  AttentionKernel kernel = AttentionKernel::automatic);
  ~SparseAttention();
  SparseAttention(SparseAttention&&) noexcept;
  SparseAttention& operator=(SparseAttention&&) noexcept;

  const AttentionShape& shape() const;
  AttentionKernel kernel() const;  // the family for dense and block-list masks (never automatic)
  AttentionKernel kernel_for(const DeviceMask& mask) const;  // the family run() uses for mask
  int ctas_per_sm() const;  // resident CTAs per SM of kernel() (occupancy)
  // Leaves `sms` SMs out of the persistent grid of later run() calls (0: use them all; at least
  // one SM is always used). A persistent kernel holds every SM it is given until it ends, so a
  // transfer queued beside it (NCCL kernels, copy kernels of another stream) only overlaps it if
  // some SMs stay free.
  void reserve_sms(int sms);
  // Pairs adjacent mask rows (off by default): with the warp_specialized family and block lists
  // of uniform 64 x 64 blocks, one work item covers query blocks 2i and 2i + 1 and loads the union
  // of their key blocks once, each row computing only its own blocks, so a block both rows keep
  // costs half the K/V traffic. Same results bit for bit. Measured 0.83-0.99x as fast as unpaired
  // items on H100 for most masks (BENCHMARKS.md, kernels v6), hence opt-in. Takes effect at the
  // next plan(). Sorted block lists share best.
  void pair_query_rows(bool enable);
  bool pairs_query_rows(const DeviceMask& mask) const;  // whether plan() / run() pair this mask
  // Splits long rows (off by default): with the warp_specialized family and unpaired block lists,
  // plan() cuts every row of at least `min_blocks` key blocks whose key tiles exceed a sixth of
  // one consumer warpgroup's even share of the kernel's work in two items (the halves of its
  // block list), and run() merges the halves by their LSE after the kernel (fp32, one rounding).
  // For kernels of few, long rows (one heavy head), whose last wave would otherwise leave
  // consumers idle. A split costs its halves' fp32 scratch and the merge, which a short row does
  // not repay: kernels of many short rows (ring steps of many ranks) ran up to 18% slower when
  // every row over the share split (BENCHMARKS.md, session 18), hence the floor. Allocates the
  // halves' scratch here (enable only): at most 12 split rows per SM, 2 x 64 x head_dim fp32 each
  // (about 100 MB at head_dim 128 on 132 SMs, less when the kernel has fewer items); takes effect
  // at the next plan().
  static constexpr int kMinSplitBlocks = 128;
  void split_long_rows(bool enable, int min_blocks = kMinSplitBlocks);
  bool splits_long_rows(const DeviceMask& mask) const;  // whether plan() / run() split this mask
  // Reads only device data of `mask`; the schedule stays valid while the mask's lists do.
  void plan(const DeviceMask& mask, void* stream);
  // lse may be null. A sparse mask needs a plan() of the same mask first (a dense one does not).
  void run(const DeviceMask& mask, const void* q, const void* k, const void* v, void* out,
           float* lse, void* stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Merges a partial result into an accumulated one (ring steps): out/lse hold the result over key
// set A, part_out/part_lse over a disjoint set B; afterwards out/lse hold the result over A u B.
// out and part_out [batch, seq, heads, head_dim] in their own dtypes (bf16, fp16 or fp32; an fp32
// accumulator avoids bf16 drift over many steps); lse [batch, heads, seq].
void merge_partial(int64_t batch, int64_t seq, int heads, int head_dim, DType out_dtype, void* out,
                   float* lse, DType part_dtype, const void* part_out, const float* part_lse,
                   void* stream);

// Mask estimation on the device (SPEC 1a): mean-pool each block of Q and K, score pooled blocks,
// softmax per query block, keep the highest-scoring key blocks until their share of the mass
// reaches tau (ties: lower key block first), plus the diagonal and sink blocks.
struct EstimateConfig {
  int block_q = 64;
  int block_k = 64;
  double tau = 0.9;
  std::vector<int> sink_blocks{0};  // at most 8
  bool keep_diagonal = true;
  double scale = 0.0;  // 0: 1/sqrt(head_dim)
};

class MaskEstimator {
 public:
  // q [seq_q, heads, head_dim], k [seq_k, heads, head_dim] (batch 1) in `dtype`.
  MaskEstimator(int64_t seq_q, int64_t seq_k, int heads, int head_dim, DType dtype,
                EstimateConfig config);
  ~MaskEstimator();
  MaskEstimator(MaskEstimator&&) noexcept;
  MaskEstimator& operator=(MaskEstimator&&) noexcept;

  // Writes the block lists on the device; no host round trip, capturable in a CUDA graph.
  void estimate(const void* q, const void* k, void* stream);
  // The lists estimate() writes (fixed capacity: row r starts at r * k_blocks, sorted ascending).
  DeviceMask mask() const;
  // Fine (M x 1) variant (FG-Attn): the pooled query of each query block scores every single key
  // of its head; keys are kept by descending score until their softmax share reaches tau, plus
  // every key of the diagonal and sink blocks. Needs heads * q_blocks * seq_k * 4 bytes of
  // device scratch, allocated on the first call (the kept keys are written over it).
  void estimate_fine(const void* q, const void* k, void* stream);
  // The key lists estimate_fine() writes (row r: key_count[r] keys ascending from r * seq_k).
  DeviceMask fine_mask() const;
  void set_tau(double tau);
  int q_blocks() const;
  int k_blocks() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dbsp::cuda
