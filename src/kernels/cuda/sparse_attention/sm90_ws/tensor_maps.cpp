// Tensor map encoding for the warp-specialised kernel (see tensor_maps.hpp).
#include "kernels/cuda/sparse_attention/sm90_ws/tensor_maps.hpp"

#include <cuda_runtime.h>

#include <cstdint>

#include "dbsp/error.hpp"
#include "kernels/cuda/common/cuda_check.hpp"

namespace dbsp::cuda::detail {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                 const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                 const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  static const EncodeTiled function = [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult found{};
    DBSP_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000,
                                                     cudaEnableDefault, &found));
    require(found == cudaDriverEntryPointSuccess && pointer != nullptr,
            "the CUDA driver does not provide cuTensorMapEncodeTiled (needed by the "
            "warp-specialised attention kernel)");
    return reinterpret_cast<EncodeTiled>(pointer);
  }();
  return function;
}

CUtensorMap tile_map(const void* base, int batch, int seq, int heads, int head_dim,
                     CUtensorMapDataType type) {
  require(reinterpret_cast<uintptr_t>(base) % 16 == 0,
          "the warp-specialised attention kernel needs 16-byte aligned Q, K and V");
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(heads), cuuint64_t(seq),
                              cuuint64_t(batch)};
  const cuuint64_t token_bytes = cuuint64_t(heads) * head_dim * 2;
  const cuuint64_t strides[3] = {cuuint64_t(head_dim) * 2, token_bytes, token_bytes * seq};
  const cuuint32_t box[4] = {64, 1, 64, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  // Past the end of the sequence the box is filled with zeros.
  const CUresult status =
      encode_tiled()(&map, type, 4, const_cast<void*>(base), dims, strides, box, element_strides,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  require(status == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed with CUresult ",
          static_cast<int>(status), " (seq ", seq, ", heads ", heads, ", head_dim ", head_dim, ")");
  return map;
}

}  // namespace

TmaMaps make_tma_maps(const SparseAttentionParams& params, ElementKind element, int head_dim) {
  const CUtensorMapDataType type = element == ElementKind::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  TmaMaps maps;
  maps.q = tile_map(params.q, params.batch, params.seq_q, params.heads, head_dim, type);
  maps.k = tile_map(params.k, params.batch, params.seq_k, params.heads, head_dim, type);
  maps.v = tile_map(params.v, params.batch, params.seq_k, params.heads, head_dim, type);
  return maps;
}

}  // namespace dbsp::cuda::detail
