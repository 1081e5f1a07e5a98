// Helpers of the GPU tests (see gpu_support.hpp): device checks, 16-bit rounding, random masks
// and the float64 / naive low-precision references.
#include "gpu_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace dbsp::gpu_test {

bool gpu_available() {
  static const bool available = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return available;
}

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

namespace {

uint32_t float_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}
float bits_float(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

uint16_t float_to_bf16(float x) {
  const uint32_t bits = float_bits(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

uint16_t float_to_fp16(float x) {
  const uint32_t bits = float_bits(x);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  const int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127 + 15;
  uint32_t mantissa = bits & 0x7fffffu;
  if (exponent >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exponent <= 0) {  // subnormal half
    if (exponent < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t middle = 1u << (shift - 1);
    if (rest > middle || (rest == middle && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry may reach inf
  return static_cast<uint16_t>(sign | half);
}

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  return bits_float(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

}  // namespace

uint16_t to_half_bits(float x, cuda::DType dtype) {
  return dtype == cuda::DType::bf16 ? float_to_bf16(x) : float_to_fp16(x);
}

float from_half_bits(uint16_t bits, cuda::DType dtype) {
  return dtype == cuda::DType::bf16 ? bits_float(static_cast<uint32_t>(bits) << 16)
                                    : fp16_to_float(bits);
}

HostTensor random_tensor(size_t count, cuda::DType dtype, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  HostTensor tensor;
  tensor.values.resize(count);
  tensor.bits.resize(count);
  for (size_t i = 0; i < count; ++i) {
    tensor.bits[i] = to_half_bits(normal(rng), dtype);
    tensor.values[i] = from_half_bits(tensor.bits[i], dtype);
  }
  return tensor;
}

int HostMask::q_block_of(int64_t token) const {
  const auto it = std::upper_bound(q_start.begin(), q_start.end(), token);
  return static_cast<int>(it - q_start.begin()) - 1;
}

std::vector<int32_t> HostMask::kept_keys(int head, int q_block, int64_t seq_k) const {
  std::vector<int32_t> kept;
  if (dense) {
    kept.resize(seq_k);
    for (int64_t j = 0; j < seq_k; ++j) kept[j] = static_cast<int32_t>(j);
    return kept;
  }
  const int r = row(head, q_block);
  if (use_blocks)
    for (int32_t block : blocks[r])
      for (int64_t j = k_start[block]; j < k_start[block + 1]; ++j)
        kept.push_back(static_cast<int32_t>(j));
  if (use_keys) kept.insert(kept.end(), keys[r].begin(), keys[r].end());
  std::sort(kept.begin(), kept.end());
  return kept;
}

int64_t HostMask::kept_scores(int64_t seq_k) const {
  int64_t total = 0;
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < q_blocks(); ++i)
      total += (q_start[i + 1] - q_start[i]) * static_cast<int64_t>(kept_keys(h, i, seq_k).size());
  return total;
}

HostMask HostMask::uniform(int heads, int64_t seq_q, int64_t seq_k, int block_q, int block_k) {
  HostMask mask;
  mask.heads = heads;
  mask.block_q = block_q;
  mask.block_k = block_k;
  for (int64_t t = 0; t < seq_q; t += block_q) mask.q_start.push_back(t);
  mask.q_start.push_back(seq_q);
  for (int64_t t = 0; t < seq_k; t += block_k) mask.k_start.push_back(t);
  mask.k_start.push_back(seq_k);
  mask.blocks.assign(static_cast<size_t>(heads) * mask.q_blocks(), {});
  mask.keys.assign(static_cast<size_t>(heads) * mask.q_blocks(), {});
  return mask;
}

void fill_random_blocks(HostMask& mask, double density, std::mt19937_64& rng, int empty_every,
                        int full_every) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (size_t r = 0; r < mask.blocks.size(); ++r) {
    auto& list = mask.blocks[r];
    list.clear();
    if (empty_every > 0 && r % empty_every == 0) continue;
    const bool full = full_every > 0 && r % full_every == 1;
    for (int j = 0; j < mask.k_blocks(); ++j)
      if (full || uniform(rng) < density) list.push_back(j);
    // Blocks in any order: shuffle so the kernel does not rely on sorted block lists.
    std::shuffle(list.begin(), list.end(), rng);
  }
  mask.use_blocks = true;
}

void fill_random_keys(HostMask& mask, double density, int64_t seq_k, std::mt19937_64& rng,
                      int empty_every) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<char> in_block(seq_k);
  for (size_t r = 0; r < mask.keys.size(); ++r) {
    auto& list = mask.keys[r];
    list.clear();
    if (empty_every > 0 && r % empty_every == 0) continue;
    std::fill(in_block.begin(), in_block.end(), 0);
    if (mask.use_blocks)
      for (int32_t block : mask.blocks[r])
        for (int64_t j = mask.k_start[block]; j < mask.k_start[block + 1]; ++j) in_block[j] = 1;
    for (int64_t j = 0; j < seq_k; ++j)
      if (!in_block[j] && uniform(rng) < density) list.push_back(static_cast<int32_t>(j));
  }
  mask.use_keys = true;
}

DeviceMaskStorage upload_mask(const HostMask& mask) {
  DeviceMaskStorage storage;
  cuda::DeviceMask& view = storage.view;
  view.block_q = mask.block_q;
  view.block_k = mask.block_k;
  view.q_blocks = mask.q_blocks();
  view.dense = mask.dense;
  if (mask.use_blocks && !mask.dense) {
    std::vector<int32_t> count, index;
    std::vector<int64_t> offset;
    for (const auto& list : mask.blocks) {
      count.push_back(static_cast<int32_t>(list.size()));
      offset.push_back(static_cast<int64_t>(index.size()));
      index.insert(index.end(), list.begin(), list.end());
    }
    if (index.empty()) index.push_back(0);  // keep a valid pointer
    storage.kv_count = DeviceArray<int32_t>(count);
    storage.block_row_offset = DeviceArray<int64_t>(offset);
    storage.kv_index = DeviceArray<int32_t>(index);
    view.kv_count = storage.kv_count.get();
    view.block_row_offset = storage.block_row_offset.get();
    view.kv_index = storage.kv_index.get();
  }
  if (mask.use_keys && !mask.dense) {
    std::vector<int32_t> index;
    std::vector<int64_t> offset{0};
    for (const auto& list : mask.keys) {
      index.insert(index.end(), list.begin(), list.end());
      offset.push_back(static_cast<int64_t>(index.size()));
    }
    if (index.empty()) index.push_back(0);
    storage.key_row_offset = DeviceArray<int64_t>(offset);
    storage.key_index = DeviceArray<int32_t>(index);
    view.key_row_offset = storage.key_row_offset.get();
    view.key_index = storage.key_index.get();
  }
  if (mask.custom_layout) {
    storage.q_start = DeviceArray<int64_t>(mask.q_start);
    storage.k_start = DeviceArray<int64_t>(mask.k_start);
    view.q_block_start = storage.q_start.get();
    view.k_block_start = storage.k_start.get();
  }
  return storage;
}

double Problem::scale() const { return 1.0 / std::sqrt(static_cast<double>(head_dim)); }

cuda::AttentionShape Problem::shape() const {
  cuda::AttentionShape shape;
  shape.batch = batch;
  shape.seq_q = seq_q;
  shape.seq_k = seq_k;
  shape.heads = heads;
  shape.head_dim = head_dim;
  shape.dtype = dtype;
  return shape;
}

std::string ErrorReport::describe() const {
  std::ostringstream out;
  out << "rows " << checked_rows << ": ours max " << ours_max << " (rel-l2 " << ours_rel_l2
      << "), naive max " << naive_max << " (rel-l2 " << naive_rel_l2 << "), lse max " << lse_max
      << ", lse -inf mismatches " << lse_infinite_mismatch << ", non-finite outputs "
      << nonfinite_outputs;
  return out.str();
}

ErrorReport compare_with_reference(const Problem& p, const HostMask& mask, const HostTensor& q,
                                   const HostTensor& k, const HostTensor& v,
                                   const std::vector<uint16_t>& out, const std::vector<float>& lse,
                                   const std::vector<int>& q_blocks_in) {
  const int d = p.head_dim;
  const int64_t token_stride = int64_t{p.heads} * d;
  std::vector<int> q_blocks = q_blocks_in;
  if (q_blocks.empty())
    for (int i = 0; i < mask.q_blocks(); ++i) q_blocks.push_back(i);
  const int64_t rows = p.batch * p.heads * static_cast<int64_t>(q_blocks.size());
  const double scale = p.scale();

  ErrorReport report;
  for (uint16_t bits : out)
    if (!std::isfinite(from_half_bits(bits, p.dtype))) ++report.nonfinite_outputs;
  double ours_sq = 0, naive_sq = 0, ref_sq = 0;
  double ours_max = 0, naive_max = 0, lse_max = 0;
  int64_t lse_mismatch = 0, checked = 0;

#pragma omp parallel for schedule(dynamic) reduction(+ : ours_sq, naive_sq, ref_sq, lse_mismatch, checked) \
    reduction(max : ours_max, naive_max, lse_max)
  for (int64_t r = 0; r < rows; ++r) {
    const int q_block = q_blocks[r % static_cast<int64_t>(q_blocks.size())];
    const int64_t bh = r / static_cast<int64_t>(q_blocks.size());
    const int64_t b = bh / p.heads;
    const int h = static_cast<int>(bh % p.heads);
    const std::vector<int32_t> keys = mask.kept_keys(h, q_block, p.seq_k);
    std::vector<double> score(keys.size());
    std::vector<float> naive_score(keys.size());
    std::vector<double> o_ref(d);
    std::vector<float> o_naive(d);
    for (int64_t i = mask.q_start[q_block]; i < mask.q_start[q_block + 1]; ++i) {
      const float* qi = q.values.data() + (b * p.seq_q + i) * token_stride + int64_t{h} * d;
      double m = -std::numeric_limits<double>::infinity();
      float naive_m = -std::numeric_limits<float>::infinity();
      for (size_t n = 0; n < keys.size(); ++n) {
        const float* kj = k.values.data() + (b * p.seq_k + keys[n]) * token_stride + int64_t{h} * d;
        double dot = 0;
        float dot32 = 0;
        for (int c = 0; c < d; ++c) {
          dot += double{qi[c]} * kj[c];
          dot32 += qi[c] * kj[c];
        }
        score[n] = dot * scale;
        naive_score[n] = round_to(dot32, p.dtype) * static_cast<float>(scale);
        m = std::max(m, score[n]);
        naive_m = std::max(naive_m, naive_score[n]);
      }
      double sum = 0;
      float naive_sum = 0;
      for (size_t n = 0; n < keys.size(); ++n) {
        score[n] = std::exp(score[n] - m);
        sum += score[n];
        naive_score[n] = std::exp(naive_score[n] - naive_m);
        naive_sum += naive_score[n];
      }
      std::fill(o_ref.begin(), o_ref.end(), 0.0);
      std::fill(o_naive.begin(), o_naive.end(), 0.f);
      for (size_t n = 0; n < keys.size(); ++n) {
        const float* vj = v.values.data() + (b * p.seq_k + keys[n]) * token_stride + int64_t{h} * d;
        const double weight = score[n] / sum;
        const float naive_weight = round_to(naive_score[n] / naive_sum, p.dtype);
        for (int c = 0; c < d; ++c) {
          o_ref[c] += weight * vj[c];
          o_naive[c] += naive_weight * vj[c];
        }
      }
      const int64_t base = (b * p.seq_q + i) * token_stride + int64_t{h} * d;
      for (int c = 0; c < d; ++c) {
        const double ours = from_half_bits(out[base + c], p.dtype);
        const double naive = round_to(o_naive[c], p.dtype);
        const double ours_error = std::isfinite(ours) ? std::abs(ours - o_ref[c])
                                                      : std::numeric_limits<double>::infinity();
        ours_max = std::max(ours_max, ours_error);
        naive_max = std::max(naive_max, std::abs(naive - o_ref[c]));
        ours_sq += std::isfinite(ours_error) ? ours_error * ours_error : 1e30;
        naive_sq += (naive - o_ref[c]) * (naive - o_ref[c]);
        ref_sq += o_ref[c] * o_ref[c];
      }
      if (!lse.empty()) {
        const double got = lse[(b * p.heads + h) * p.seq_q + i];
        const double want =
            keys.empty() ? -std::numeric_limits<double>::infinity() : m + std::log(sum);
        if (std::isinf(want) || std::isinf(got) || std::isnan(got)) {
          if (!(std::isinf(want) && std::isinf(got) && got < 0)) ++lse_mismatch;
        } else {
          lse_max = std::max(lse_max, std::abs(got - want));
        }
      }
      ++checked;
    }
  }
  report.ours_max = ours_max;
  report.naive_max = naive_max;
  report.lse_max = lse_max;
  report.lse_infinite_mismatch = lse_mismatch;
  report.checked_rows = checked;
  const double denominator = std::sqrt(std::max(ref_sq, 1e-300));
  report.ours_rel_l2 = std::sqrt(ours_sq) / denominator;
  report.naive_rel_l2 = std::sqrt(naive_sq) / denominator;
  return report;
}

void expect_within_naive_bound(const ErrorReport& report) {
  EXPECT_GT(report.checked_rows, 0);
  EXPECT_EQ(report.nonfinite_outputs, 0) << report.describe();
  EXPECT_LE(report.ours_max, 2 * report.naive_max + 1e-5) << report.describe();
  EXPECT_LE(report.ours_rel_l2, 2 * report.naive_rel_l2 + 1e-6) << report.describe();
  EXPECT_LE(report.lse_max, 2e-3) << report.describe();
  EXPECT_EQ(report.lse_infinite_mismatch, 0) << report.describe();
}

}  // namespace dbsp::gpu_test
