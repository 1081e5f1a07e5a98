// Dense CPU attention: every query attends to every key.
#include "dbsp/attention.hpp"
#include "kernels/cpu/attention_checks.hpp"
#include "kernels/cpu/key_cursors.hpp"
#include "kernels/cpu/query_block_loop.hpp"

namespace dbsp {

template <class T>
void attention_dense(const AttentionProblem& problem, const T* q, const T* k, const T* v, T* out,
                     T* lse) {
  const auto tensors = cpu::checked_tensors(problem, q, k, v, out, lse, "attention_dense");
  const int64_t seq_k = problem.seq_k();
  cpu::for_each_query_block(problem, tensors,
                            [seq_k](int, int) { return cpu::TokenRangeCursor(0, seq_k); });
}

template void attention_dense<float>(const AttentionProblem&, const float*, const float*,
                                     const float*, float*, float*);
template void attention_dense<double>(const AttentionProblem&, const double*, const double*,
                                      const double*, double*, double*);

}  // namespace dbsp
