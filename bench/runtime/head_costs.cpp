// How well block counts predict a one-head kernel's time: the question behind the planner's
// balance. db-SP balances heads by kept blocks (plus a per-row cost, CostModel); at P = 16 the
// measured imbalance of its Ulysses layers exceeds the predicted one (1.074 against 1.039,
// BENCHMARKS.md session 13), and every head chunk there holds about one head. For each head of a
// few synthetic-workload layers this times the kernel the runtime launches for that head alone
// (the whole sequence, seeded bf16 inputs, median of 7 runs) and prints its time against the
// cost model's prediction; the spread of the ratio over heads is what a balancer on block counts
// cannot see. Beside it, each head's longest-first makespan over `slots` consumer warpgroups
// (two per SM; the kernel hands rows out longest first): the summary compares how well each
// predictor explains the times (the spread over all heads of time / predictor, least-squares
// scaled with an intercept). Last, the remedy for a lone heavy head's ragged last wave: the same
// kernel with its long rows split in halves inside its own work list and merged by LSE
// (SparseAttention::split_long_rows, as the runtime runs one-head chunks), timed the same way and
// checked against the unsplit output. (Session 14 measured the two-kernel form of the split here:
// no gain, BENCHMARKS.md.)
//   usage: bench_head_costs [workload] [layers] [step] [slots]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "dbsp/planner.hpp"
#include "dbsp/workload.hpp"
#include "timing.hpp"  // bench/attention: median_ms

namespace {

void check(cudaError_t status, const char* what) {
  dbsp::require(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

template <class T>
T* upload(const std::vector<T>& host) {
  T* device = nullptr;
  check(cudaMalloc(&device, std::max<size_t>(1, host.size()) * sizeof(T)), "cudaMalloc");
  check(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
        "cudaMemcpy");
  return device;
}

// Longest-first makespan of `rows` (each kept blocks plus `row_blocks`) over `slots` slots.
double makespan(std::vector<double> rows, int slots) {
  std::sort(rows.begin(), rows.end(), std::greater<>());
  std::priority_queue<double, std::vector<double>, std::greater<>> free_at;
  for (int s = 0; s < slots; ++s) free_at.push(0.0);
  double end = 0;
  for (double row : rows) {
    const double done = free_at.top() + row;
    free_at.pop();
    free_at.push(done);
    end = std::max(end, done);
  }
  return end;
}

// Coefficient of variation of y / (a + b x), a and b fitted by least squares.
double fitted_spread(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sx += x[i], sy += y[i], sxx += x[i] * x[i], sxy += x[i] * y[i];
  }
  const double b = (n * sxy - sx * sy) / (n * sxx - sx * sx), a = (sy - b * sx) / n;
  double mean = 0, square = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = y[i] / (a + b * x[i]);
    mean += r / n, square += r * r / n;
  }
  return std::sqrt(std::max(0.0, square - mean * mean)) / mean;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string workload = argc > 1 ? argv[1] : "wan2.1-720p";
    const int layers = argc > 2 ? std::atoi(argv[2]) : 3;
    const int step = argc > 3 ? std::atoi(argv[3]) : 0;
    const int slots = argc > 4 ? std::atoi(argv[4]) : 264;
    const dbsp::ModelShape& shape = dbsp::model_preset(workload);
    const dbsp::SyntheticWorkload source(shape, /*seed=*/0);
    const dbsp::CostModel cost;
    const int64_t tokens = shape.tokens();
    const int D = shape.head_dim;
    // One head's Q, K, V [tokens, 1, D], seeded bf16 in [-1, 1).
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> bits(0, 0x7fff);
    std::vector<uint16_t> host(static_cast<size_t>(tokens * D));
    auto fill = [&] {
      for (uint16_t& x : host) {
        // Sign, and an exponent at most 126: |x| < 1.
        const uint32_t b = static_cast<uint32_t>(bits(rng));
        x = static_cast<uint16_t>((b & 0x8000u) | (std::min<uint32_t>((b >> 7) & 0xff, 126u) << 7) |
                                  (b & 0x7f));
      }
      return upload(host);
    };
    uint16_t* q = fill();
    uint16_t* k = fill();
    uint16_t* v = fill();
    uint16_t* out = nullptr;
    float* lse = nullptr;
    check(cudaMalloc(&out, host.size() * 2), "cudaMalloc");
    check(cudaMalloc(&lse, tokens * sizeof(float)), "cudaMalloc");
    const dbsp::cuda::AttentionShape one_head{1,  tokens, tokens, 1, D, dbsp::cuda::DType::bf16,
                                              0.0};
    dbsp::cuda::SparseAttention kernel(one_head), split_kernel(one_head);
    split_kernel.split_long_rows(true);
    uint16_t* split_out = nullptr;
    float* split_lse = nullptr;
    check(cudaMalloc(&split_out, host.size() * 2), "cudaMalloc");
    check(cudaMalloc(&split_lse, tokens * sizeof(float)), "cudaMalloc");
    std::vector<uint16_t> unsplit_host(host.size()), split_host(host.size());
    auto bf16_value = [](uint16_t x) {
      const uint32_t widened = uint32_t{x} << 16;
      float f = 0;
      std::memcpy(&f, &widened, 4);
      return f;
    };
    std::printf("%s, step %d: one head's kernel alone (ms) against the cost model's prediction\n",
                workload.c_str(), step);
    std::printf("%5s %4s %9s %9s %9s %9s %7s %10s %9s %7s %9s\n", "layer", "head", "kept", "rows",
                "pred_ms", "meas_ms", "ratio", "makespan", "split_ms", "gain", "split_err");
    double unsplit_sum = 0, split_sum = 0, heavy_unsplit = 0, heavy_split = 0, worst_error = 0;
    const double row_blocks = cost.us_per_row_step / (cost.us_per_block * (D / 128.0));
    std::vector<double> all_kept, all_makespans, all_ms;
    for (int layer = 0; layer < layers; ++layer) {
      const dbsp::BlockMask mask = source.block_mask(step, layer);
      const dbsp::BlockCsr csr = mask.to_csr();
      const int Q = csr.q_blocks;
      std::vector<double> layer_ratios;
      for (int h = 0; h < csr.heads; ++h) {
        const auto first = static_cast<size_t>(h) * Q;
        std::vector<int32_t> count(csr.kv_count.begin() + first, csr.kv_count.begin() + first + Q);
        std::vector<int64_t> offset(static_cast<size_t>(Q) + 1);
        for (int r = 0; r <= Q; ++r) offset[r] = csr.row_offset[first + r] - csr.row_offset[first];
        std::vector<int32_t> index(csr.kv_index.begin() + csr.row_offset[first],
                                   csr.kv_index.begin() + csr.row_offset[first + Q]);
        int32_t* d_count = upload(count);
        int64_t* d_offset = upload(offset);
        int32_t* d_index = upload(index);
        dbsp::cuda::DeviceMask dm;
        dm.q_blocks = Q;
        dm.kv_count = d_count;
        dm.block_row_offset = d_offset;
        dm.kv_index = d_index;
        kernel.plan(dm, nullptr);
        const double ms =
            dbsp::bench::median_ms(7, [&] { kernel.run(dm, q, k, v, out, lse, nullptr); });
        int64_t rows = 0;
        std::vector<double> row_costs;
        for (int32_t c : count) {
          rows += c > 0;
          if (c > 0) row_costs.push_back(c + row_blocks);
        }
        const double span = makespan(std::move(row_costs), slots);
        check(cudaMemcpy(unsplit_host.data(), out, host.size() * 2, cudaMemcpyDeviceToHost),
              "copy");
        split_kernel.plan(dm, nullptr);
        const double split_ms = dbsp::bench::median_ms(
            7, [&] { split_kernel.run(dm, q, k, v, split_out, split_lse, nullptr); });
        check(cudaMemcpy(split_host.data(), split_out, host.size() * 2, cudaMemcpyDeviceToHost),
              "copy");
        double largest = 0, error = 0;
        for (size_t i = 0; i < host.size(); ++i) {
          const double a = bf16_value(unsplit_host[i]), b = bf16_value(split_host[i]);
          largest = std::max(largest, std::abs(a));
          error = std::isfinite(b) ? std::max(error, std::abs(a - b)) : INFINITY;
        }
        const double split_error = largest > 0 ? error / largest : error;
        worst_error = std::max(worst_error, split_error);
        unsplit_sum += ms;
        split_sum += split_ms;
        if (index.size() > 900000) heavy_unsplit += ms, heavy_split += split_ms;
        const auto kept = static_cast<int64_t>(index.size());
        const double predicted =
            (double(kept) * cost.us_per_block * (D / 128.0) + double(rows) * cost.us_per_row_step) *
            1e-3;
        layer_ratios.push_back(ms / predicted);
        all_kept.push_back(double(kept));
        all_makespans.push_back(span);
        all_ms.push_back(ms);
        std::printf("%5d %4d %9lld %9lld %9.3f %9.3f %7.3f %10.1f %9.3f %7.3f %9.2e\n", layer, h,
                    static_cast<long long>(kept), static_cast<long long>(rows), predicted, ms,
                    ms / predicted, span, split_ms, ms / split_ms, split_error);
        cudaFree(d_count);
        cudaFree(d_offset);
        cudaFree(d_index);
      }
      double mean = 0;
      for (double r : layer_ratios) mean += r / layer_ratios.size();
      double var = 0;
      for (double r : layer_ratios) var += (r - mean) * (r - mean) / layer_ratios.size();
      const auto [lo, hi] = std::minmax_element(layer_ratios.begin(), layer_ratios.end());
      std::printf(
          "layer %d: measured / predicted over heads: mean %.3f, min %.3f, max %.3f, "
          "cv %.1f%%\n",
          layer, mean, *lo, *hi, 100.0 * std::sqrt(var) / mean);
    }
    std::printf(
        "over all %zu heads, time / fitted predictor varies by (coefficient of variation): "
        "kept blocks %.1f%%, longest-first makespan over %d slots %.1f%%\n",
        all_ms.size(), 100.0 * fitted_spread(all_kept, all_ms), slots,
        100.0 * fitted_spread(all_makespans, all_ms));
    std::printf(
        "split long rows: unsplit %.3f ms, split %.3f ms (%.3fx) over all heads; "
        "heads over 900k blocks %.3f -> %.3f ms (%.3fx); largest split error (max abs "
        "difference over the largest output) %.2e\n",
        unsplit_sum, split_sum, unsplit_sum / split_sum, heavy_unsplit, heavy_split,
        heavy_split > 0 ? heavy_unsplit / heavy_split : 0.0, worst_error);
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(out);
    cudaFree(lse);
    cudaFree(split_out);
    cudaFree(split_lse);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_head_costs: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
