// The emulator's CPU step timer: the fp32 CPU kernels (block-sparse or fine) on constant
// placeholder inputs.
#include <algorithm>
#include <vector>

#include "sp/step_timer.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp::sp {
namespace {

class CpuStepTimer final : public StepTimer {
 public:
  double step_ms(const AttentionProblem& local, const BlockCsr& mask, int, int, bool merge,
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
};

}  // namespace

std::unique_ptr<StepTimer> make_cpu_step_timer() { return std::make_unique<CpuStepTimer>(); }

}  // namespace dbsp::sp
