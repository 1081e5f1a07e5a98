// Fine-grained (FG-Attn) CPU attention: query block i of head h attends to an explicit sorted
// list of single key tokens of the local K/V.
#include "dbsp/attention.hpp"
#include "kernels/cpu/attention_checks.hpp"
#include "kernels/cpu/key_cursors.hpp"
#include "kernels/cpu/query_block_loop.hpp"

namespace dbsp {

template <class T>
void attention_fine(const AttentionProblem& problem, const FineMask& mask, const T* q, const T* k,
                    const T* v, T* out, T* lse) {
  constexpr const char* kCaller = "attention_fine";
  const auto tensors = cpu::checked_tensors(problem, q, k, v, out, lse, kCaller);
  cpu::check_fine_mask(problem, mask, kCaller);
  cpu::for_each_query_block(problem, tensors, [&](int head, int q_block) {
    return cpu::KeyListCursor(mask.keys(head, q_block));
  });
}

template void attention_fine<float>(const AttentionProblem&, const FineMask&, const float*,
                                    const float*, const float*, float*, float*);
template void attention_fine<double>(const AttentionProblem&, const FineMask&, const double*,
                                     const double*, const double*, double*, double*);

}  // namespace dbsp
