// The emulator's CPU step timer: the fp32 CPU kernels (block-sparse or fine) on constant
// placeholder inputs.
#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "sp/step_timer.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp::sp {
namespace {

class CpuStepTimer final : public StepTimer {
 public:
  double step_ms(const AttentionProblem& local, const BlockCsr& mask, int, int, bool merge, int,
                 int) override {
    return timed(local, merge, [&] {
      attention_block_sparse<float>(local, mask, q_.data(), k_.data(), k_.data(), part_.data(),
                                    part_lse_.data());
    });
  }

  double fine_step_ms(const AttentionProblem& local, const FineMask& mask, bool merge,
                      int) override {
    return timed(local, merge, [&] {
      attention_fine<float>(local, mask, q_.data(), k_.data(), k_.data(), part_.data(),
                            part_lse_.data());
    });
  }

  // The host executor packs slabs with memcpy, row by row from [tokens, heads, dim] tensors.
  double copy_ms(int64_t rows, int64_t row_bytes) override {
    if (rows <= 0) return 0;
    auto rate = ms_per_row_.find(row_bytes);
    if (rate == ms_per_row_.end()) {
      constexpr int64_t kRows = 1 << 14, kStride = 8;
      std::vector<char> from(static_cast<size_t>(kRows * kStride * row_bytes), 1);
      std::vector<char> into(static_cast<size_t>(kRows * row_bytes));
      const double best = best_host_ms(0, 3, [&] {
        for (int64_t r = 0; r < kRows; ++r) {
          std::memcpy(into.data() + r * row_bytes, from.data() + r * kStride * row_bytes,
                      static_cast<size_t>(row_bytes));
        }
      });
      rate = ms_per_row_.emplace(row_bytes, best / kRows).first;
    }
    return static_cast<double>(rows) * rate->second;
  }

  double upload_ms(int64_t) override { return 0; }
  double table_fill_ms(int64_t) override { return 0; }
  double staged_upload_ms(int64_t) override { return 0; }
  double block_indices_ms(int64_t, int, int64_t) override { return 0; }

 private:
  // Sizes the placeholders for `local`, then times attend() and the merge that follows it.
  template <class Attend>
  double timed(const AttentionProblem& local, bool merge, Attend&& attend) {
    const int64_t q_elements = local.seq_q() * local.heads * local.head_dim;
    const int64_t k_elements = local.seq_k() * local.heads * local.head_dim;
    grow(q_, q_elements);
    grow(k_, k_elements);
    grow(out_, q_elements);
    grow(part_, q_elements);
    grow(lse_, local.seq_q() * local.heads);
    grow(part_lse_, local.seq_q() * local.heads);
    Stopwatch clock;
    attend();
    if (merge) {
      merge_partial<float>(1, local.seq_q(), local.heads, local.head_dim, out_.data(), lse_.data(),
                           part_.data(), part_lse_.data());
    }
    return clock.elapsed_ms();
  }
  static void grow(std::vector<float>& buffer, int64_t elements) {
    if (static_cast<int64_t>(buffer.size()) < elements) buffer.resize(elements, 0.01f);
  }
  std::vector<float> q_, k_, out_, part_, lse_, part_lse_;
  std::map<int64_t, double> ms_per_row_;  // by row bytes
};

}  // namespace

std::unique_ptr<StepTimer> make_cpu_step_timer() { return std::make_unique<CpuStepTimer>(); }

}  // namespace dbsp::sp
