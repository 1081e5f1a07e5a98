// Fine vs block at equal retained softmax mass (see equal_mass.hpp).
#include "equal_mass.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "dbsp/cuda_attention.hpp"
#include "dbsp/workload.hpp"
#include "device_data.hpp"
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/device_buffer.hpp"
#include "timing.hpp"

namespace dbsp::bench {
namespace {

using cuda::detail::DeviceBuffer;

std::vector<uint16_t> to_bf16(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t word;
    std::memcpy(&word, &values[i], sizeof word);
    bits[i] = static_cast<uint16_t>((word + 0x7fffu + ((word >> 16) & 1u)) >> 16);
  }
  return bits;
}

std::vector<float> download_floats(const DeviceBuffer& buffer, size_t count) {
  std::vector<float> host(count);
  DBSP_CUDA_CHECK(cudaMemcpy(host.data(), buffer.get(), count * 4, cudaMemcpyDeviceToHost));
  return host;
}

std::vector<int32_t> download_ints(const int32_t* device, size_t count) {
  std::vector<int32_t> host(count);
  DBSP_CUDA_CHECK(cudaMemcpy(host.data(), device, count * 4, cudaMemcpyDeviceToHost));
  return host;
}

// Mean over query rows of exp(lse - lse_full): the share of each row's softmax mass kept.
double retained_share(const std::vector<float>& lse, const std::vector<float>& full) {
  double sum = 0;
  for (size_t i = 0; i < lse.size(); ++i)
    sum += std::isinf(lse[i]) ? 0.0 : std::exp(double(lse[i]) - double(full[i]));
  return sum / double(lse.size());
}

}  // namespace

EqualMassResult equal_mass_experiment(const std::string& shape_name, double target, int reps,
                                      uint64_t seed, cuda::AttentionKernel kernel) {
  const ModelShape& shape = model_preset(shape_name);
  const SyntheticWorkload workload(shape, seed, 64);
  std::vector<float> host_q, host_k;
  workload.qk(0, 0, host_q, host_k);
  const int64_t seq = shape.tokens();
  const int64_t elements = seq * shape.heads * shape.head_dim;
  DeviceBuffer q(elements * 2), k(elements * 2), v(elements * 2), out(elements * 2),
      lse(seq * shape.heads * 4);
  const std::vector<uint16_t> q_bits = to_bf16(host_q), k_bits = to_bf16(host_k);
  DBSP_CUDA_CHECK(cudaMemcpy(q.get(), q_bits.data(), elements * 2, cudaMemcpyHostToDevice));
  DBSP_CUDA_CHECK(cudaMemcpy(k.get(), k_bits.data(), elements * 2, cudaMemcpyHostToDevice));
  fill_random(cuda::DType::bf16, v.get(), elements, seed + 3);

  cuda::AttentionShape attention_shape;
  attention_shape.seq_q = attention_shape.seq_k = seq;
  attention_shape.heads = shape.heads;
  attention_shape.head_dim = shape.head_dim;
  cuda::SparseAttention attention(attention_shape, 64, 0, kernel);
  cuda::DeviceMask dense;
  dense.dense = true;
  attention.run(dense, q.get(), k.get(), v.get(), out.get(), lse.get<float>(), nullptr);
  const std::vector<float> full = download_floats(lse, seq * shape.heads);

  cuda::MaskEstimator estimator(seq, seq, shape.heads, shape.head_dim, cuda::DType::bf16, {});
  const int rows = shape.heads * estimator.q_blocks();
  const double all_scores = double(seq) * double(seq) * shape.heads;

  // Runs one side at a given tau: estimate, attend, and measure the retained share and density.
  const auto measure = [&](bool fine, double tau, EqualMassSide& side, bool time_it) {
    estimator.set_tau(tau);
    const auto estimate = [&] {
      if (fine)
        estimator.estimate_fine(q.get(), k.get(), nullptr);
      else
        estimator.estimate(q.get(), k.get(), nullptr);
    };
    estimate();
    const cuda::DeviceMask mask = fine ? estimator.fine_mask() : estimator.mask();
    attention.plan(mask, nullptr);
    const auto launch = [&] {
      attention.run(mask, q.get(), k.get(), v.get(), out.get(), lse.get<float>(), nullptr);
    };
    launch();
    side.tau = tau;
    side.mass = retained_share(download_floats(lse, seq * shape.heads), full);
    const std::vector<int32_t> counts =
        download_ints(fine ? mask.key_count : mask.kv_count, static_cast<size_t>(rows));
    double scores = 0;
    for (int r = 0; r < rows; ++r) {
      const int q_block = r % estimator.q_blocks();
      const double q_rows = double(std::min<int64_t>(64, seq - int64_t{q_block} * 64));
      scores += q_rows * counts[r] * (fine ? 1.0 : 64.0);
    }
    side.density = scores / all_scores;
    if (time_it) {
      side.estimate_ms = median_ms(reps, estimate);
      attention.plan(fine ? estimator.fine_mask() : estimator.mask(), nullptr);
      side.kernel_ms = median_ms(reps, launch);
    }
  };
  // Bisection on tau: the retained share grows with tau (top-p sets are nested).
  const auto tune = [&](bool fine) {
    EqualMassSide side;
    double low = 0.05, high = 1.0;
    for (int step = 0; step < 12; ++step) {
      const double middle = 0.5 * (low + high);
      measure(fine, middle, side, false);
      (side.mass < target ? low : high) = middle;
    }
    measure(fine, high, side, true);
    return side;
  };
  EqualMassResult result;
  result.shape = shape_name;
  result.target = target;
  result.block = tune(false);
  result.fine = tune(true);
  return result;
}

}  // namespace dbsp::bench
