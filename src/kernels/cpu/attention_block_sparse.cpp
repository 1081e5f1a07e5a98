// Block-sparse CPU attention: query block i of head h attends to the tokens of its kept key
// blocks (CSR row h * q_blocks + i), laid out by problem.k_layout.
#include "dbsp/attention.hpp"
#include "kernels/cpu/attention_checks.hpp"
#include "kernels/cpu/key_cursors.hpp"
#include "kernels/cpu/query_block_loop.hpp"

namespace dbsp {

template <class T>
void attention_block_sparse(const AttentionProblem& problem, const BlockCsr& mask, const T* q,
                            const T* k, const T* v, T* out, T* lse) {
  constexpr const char* kCaller = "attention_block_sparse";
  const auto tensors = cpu::checked_tensors(problem, q, k, v, out, lse, kCaller);
  cpu::check_block_csr(problem, mask, kCaller);
  cpu::for_each_query_block(problem, tensors, [&](int head, int q_block) {
    return cpu::BlockKeyCursor(problem.k_layout, mask.row(head, q_block));
  });
}

template void attention_block_sparse<float>(const AttentionProblem&, const BlockCsr&, const float*,
                                            const float*, const float*, float*, float*);
template void attention_block_sparse<double>(const AttentionProblem&, const BlockCsr&,
                                             const double*, const double*, const double*, double*,
                                             double*);

}  // namespace dbsp
