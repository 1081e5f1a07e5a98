// Configuration of the warp-specialised wgmma attention kernel (sm_90a). A CTA holds one producer
// warpgroup and two consumer warpgroups. Producer warps i and i + 2 feed pipeline i: warp i takes
// work items from the persistent work list and loads Q and the K tiles, warp i + 2 the V tiles,
// into a ring of shared-memory stages signalled on mbarriers (TMA for contiguous 64-key tiles,
// cp.async row gathers for key lists). Consumer warpgroups only compute: S = Q K^T with Q held in
// registers, the online softmax, O += P V, and the epilogue. Separate items (kSharedKv = false):
// each consumer has its own pipeline and 64-query items, so any block or key list works. Shared
// keys (kSharedKv = true, dense masks): both consumers take halves of a 128-query item and read the
// same K/V stages, so each K/V byte loaded serves 128 queries. Paired rows (block lists) share the
// stages the same way, each consumer skipping the stages its row does not keep (mode.hpp).
#pragma once

#include "kernels/cuda/sparse_attention/sm90_ws/mode.hpp"

namespace dbsp::cuda::detail {

template <class ElementT, int kHeadDimT, WsMode kModeT>
struct WsTraits {
  using Element = ElementT;
  static constexpr int kHeadDim = kHeadDimT;
  static constexpr WsMode kMode = kModeT;
  static constexpr bool kSharedKv = kMode != WsMode::separate;  // both consumers read each stage
  static constexpr bool kPaired = kMode == WsMode::paired;
  static constexpr int kConsumers = 2;  // consumer warpgroups per CTA
  static constexpr int kConsumersPerPipeline = kSharedKv ? 2 : 1;
  static constexpr int kPipelines = kConsumers / kConsumersPerPipeline;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kItemRows = 64 * kConsumersPerPipeline;  // queries per work item
  // setmaxnreg budgets: 128 x 64 + 256 x 216 <= 168 x 384, the cap at entry.
  static constexpr int kProducerRegisters = 64;
  static constexpr int kConsumerRegisters = 216;

  static constexpr int kColumnBlocks = kHeadDim / 64;   // 128-byte swizzle atoms per row
  static constexpr int kTileBytes = 64 * kHeadDim * 2;  // one Q, K or V tile of 64 rows
  static constexpr int kBarrierBytes = 2048;            // mbarriers and stage records, at the end
  // 227 KB is the most one CTA may have on an H100 / H200 SM.
  static constexpr int kSmemLimit = 227 * 1024;
  static constexpr int kQBytes = kConsumersPerPipeline * kTileBytes;
  static constexpr int kStageBytes = 2 * kTileBytes;  // K and V
  static constexpr int kStagesThatFit =
      ((kSmemLimit - kBarrierBytes) / kPipelines - kQBytes) / kStageBytes;
  static constexpr int kStages = kStagesThatFit < 8 ? kStagesThatFit : 8;
  static constexpr int kPipelineBytes = kQBytes + kStages * kStageBytes;
  static constexpr int kSmemBytes = kPipelines * kPipelineBytes + kBarrierBytes;
  static_assert(kHeadDim == 64 || kHeadDim == 128);
  static_assert(kStages >= 3, "tile t's V, tile t+1's K and one tile in flight");
  static_assert(kSmemBytes <= kSmemLimit);
};

}  // namespace dbsp::cuda::detail
