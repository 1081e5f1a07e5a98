// Boundary checks of the CPU attention entry points: shapes, layouts, masks and pointers are
// validated before any work starts, and throw dbsp::Error naming what was expected and what came.
#pragma once

#include <cstdint>

#include "dbsp/attention.hpp"
#include "kernels/cpu/query_tile.hpp"

namespace dbsp::cpu {

void check_problem(const AttentionProblem& problem, const char* caller);
void check_block_csr(const AttentionProblem& problem, const BlockCsr& mask, const char* caller);
void check_fine_mask(const AttentionProblem& problem, const FineMask& mask, const char* caller);
void check_pointers(const AttentionProblem& problem, const void* q, const void* k, const void* v,
                    const void* out, const void* lse, const char* caller);

// Checks the problem and pointers and gathers them into the kernels' view.
template <class T>
AttentionTensors<T> checked_tensors(const AttentionProblem& problem, const T* q, const T* k,
                                    const T* v, T* out, T* lse, const char* caller) {
  check_problem(problem, caller);
  check_pointers(problem, q, k, v, out, lse, caller);
  AttentionTensors<T> tensors;
  tensors.q = q;
  tensors.k = k;
  tensors.v = v;
  tensors.out = out;
  tensors.lse = lse;
  tensors.seq_q = problem.seq_q();
  tensors.seq_k = problem.seq_k();
  tensors.heads = problem.heads;
  tensors.head_dim = problem.head_dim;
  tensors.scale = static_cast<T>(problem.softmax_scale());
  return tensors;
}

}  // namespace dbsp::cpu
