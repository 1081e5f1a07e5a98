// The benchmark's per-variant check against the float64 CPU oracle (see variant_check.hpp).
#include "variant_check.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "bench_masks.hpp"
#include "dbsp/attention.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/fine_mask.hpp"
#include "device_data.hpp"
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/device_buffer.hpp"

namespace dbsp::bench {
namespace {

using cuda::detail::DeviceBuffer;

double bf16_to_double(uint16_t bits) {
  const uint32_t word = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &word, sizeof x);
  return x;
}

std::vector<double> download_bf16(const DeviceBuffer& buffer, int64_t count) {
  std::vector<uint16_t> bits(count);
  DBSP_CUDA_CHECK(cudaMemcpy(bits.data(), buffer.get(), count * 2, cudaMemcpyDeviceToHost));
  std::vector<double> values(count);
  for (int64_t i = 0; i < count; ++i) values[i] = bf16_to_double(bits[i]);
  return values;
}

template <class T>
DeviceBuffer upload(const std::vector<T>& host) {
  DeviceBuffer buffer(std::max<size_t>(host.size(), 1) * sizeof(T));
  if (!host.empty())
    DBSP_CUDA_CHECK(
        cudaMemcpy(buffer.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return buffer;
}

}  // namespace

const char* to_string(Variant variant) {
  switch (variant) {
    case Variant::dense:
      return "dense";
    case Variant::block_sparse:
      return "block";
    case Variant::fine:
      return "fine";
  }
  return "?";
}

std::string CheckResult::describe() const {
  std::ostringstream out;
  out << (ok() ? "ok" : "WRONG") << " (rel-l2 " << rel_l2;
  if (nonfinite) out << ", " << nonfinite << " non-finite";
  out << ")";
  return out.str();
}

CheckResult check_variant(Variant variant, int head_dim, double density, uint64_t seed,
                          cuda::AttentionKernel kernel) {
  const int64_t seq = 1000;
  const int heads = 2;
  const int64_t count = seq * heads * head_dim;
  DeviceBuffer q(count * 2), k(count * 2), v(count * 2), out(count * 2), lse(seq * heads * 4);
  fill_random(cuda::DType::bf16, q.get(), count, seed);
  fill_random(cuda::DType::bf16, k.get(), count, seed + 1);
  fill_random(cuda::DType::bf16, v.get(), count, seed + 2);
  DBSP_CUDA_CHECK(cudaMemset(out.get(), 0xff, out.bytes()));

  const AttentionProblem problem = AttentionProblem::uniform(1, seq, seq, heads, head_dim);
  const MaskGeometry geometry{seq, seq, 64, 64};
  const BlockMask blocks = uniform_mask(
      heads, geometry, variant == Variant::fine ? std::min(1.0, 2 * density) : density, seed);
  const BlockCsr csr = blocks.to_csr();
  DeviceBuffer kv_count = upload(csr.kv_count), offsets = upload(csr.row_offset),
               kv_index = upload(csr.kv_index);
  cuda::DeviceMask mask;
  mask.q_blocks = blocks.q_blocks();
  mask.dense = variant == Variant::dense;
  DeviceKeyLists keys;
  if (variant == Variant::block_sparse) {
    mask.kv_count = kv_count.get<int32_t>();
    mask.block_row_offset = offsets.get<int64_t>();
    mask.kv_index = kv_index.get<int32_t>();
  } else if (variant == Variant::fine) {
    thin_blocks_to_keys(kv_count.get<int32_t>(), offsets.get<int64_t>(), kv_index.get<int32_t>(),
                        heads * blocks.q_blocks(), 64, seq, 0.5, seed, keys);
    mask.key_row_offset = keys.row_offset;
    mask.key_index = keys.key_index;
  }
  cuda::AttentionShape shape;
  shape.seq_q = shape.seq_k = seq;
  shape.heads = heads;
  shape.head_dim = head_dim;
  cuda::SparseAttention attention(shape, 64, 0, kernel);
  attention.plan(mask, nullptr);
  attention.run(mask, q.get(), k.get(), v.get(), out.get(), lse.get<float>(), nullptr);
  DBSP_CUDA_CHECK(cudaDeviceSynchronize());

  const std::vector<double> hq = download_bf16(q, count), hk = download_bf16(k, count),
                            hv = download_bf16(v, count), got = download_bf16(out, count);
  std::vector<double> want(count), want_lse(seq * heads);
  switch (variant) {
    case Variant::dense:
      attention_dense<double>(problem, hq.data(), hk.data(), hv.data(), want.data(),
                              want_lse.data());
      break;
    case Variant::block_sparse:
      attention_block_sparse<double>(problem, csr, hq.data(), hk.data(), hv.data(), want.data(),
                                     want_lse.data());
      break;
    case Variant::fine: {
      std::vector<int32_t> key_index(keys.total_keys);
      DBSP_CUDA_CHECK(cudaMemcpy(key_index.data(), keys.key_index, keys.total_keys * 4,
                                 cudaMemcpyDeviceToHost));
      const FineMask fine(heads, geometry, keys.host_row_offset, std::move(key_index));
      attention_fine<double>(problem, fine, hq.data(), hk.data(), hv.data(), want.data(),
                             want_lse.data());
      break;
    }
  }
  CheckResult result;
  double error = 0, norm = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(got[i])) {
      ++result.nonfinite;
      continue;
    }
    error += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  result.rel_l2 = std::sqrt(error / std::max(norm, 1e-300));
  return result;
}

}  // namespace dbsp::bench
