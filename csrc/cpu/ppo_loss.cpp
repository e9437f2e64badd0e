// CPU kernels for token log-probs, the fused PPO loss and their logits gradient
// (math in core/ppo_loss.h).
//
// Rows are split across threads. Forward: one pass per row builds the online-softmax sums in
// kLanes interleaved accumulators (independent exp chains overlap in the pipeline) over blocks
// of kBlock logits, merged block by block: a two-level sum, accurate to ~1e-6 at V = 128k
// in float32 where one running sum drifts to ~3e-5. Backward: one pass per row recomputes p_i
// from the saved lse and writes the gradient.
//
// Contiguous float32/float16/bfloat16 rows on CPUs with AVX2 + FMA take the vectorized passes of
// ppo_loss_avx2.cpp instead (ATen's vectorized exp, about 4x faster); float64, strided rows and
// other CPUs keep the scalar passes below.
#include <ATen/Parallel.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "cpu/ppo_loss_avx2.h"
#include "ops/ppo_loss.h"

namespace fastrl::cpu {
namespace {

constexpr int64_t kLanes = 4;
// Logits summed apart before merging: float32 error ~ (kBlock / kLanes + V / kBlock) ulp.
constexpr int64_t kBlock = 512;

// Rows per task: about 64k logits, so small vocabularies still get big enough tasks.
int64_t grain(int64_t vocab) { return std::max<int64_t>(1, (int64_t(1) << 16) / vocab); }

template <typename scalar_t, typename T>
core::SoftmaxSums<T> row_sums(const core::LogitRows<scalar_t, T>& rows, int64_t r) {
  core::SoftmaxSums<T> total;
  const int64_t V = rows.vocab;
  for (int64_t begin = 0; begin < V; begin += kBlock) {
    const int64_t end = std::min(V, begin + kBlock);
    core::SoftmaxSums<T> lane[kLanes];
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
      for (int64_t k = 0; k < kLanes; ++k) lane[k].add(rows.scaled(r, i + k));
    }
    for (; i < end; ++i) lane[0].add(rows.scaled(r, i));
    for (int64_t k = 0; k < kLanes; ++k) total.merge(lane[k]);
  }
  return total;
}

// Whether rows of this problem take the AVX2 passes.
template <typename scalar_t, typename T>
bool vectorized(const core::LogitRows<scalar_t, T>& rows) {
#if defined(FASTRL_WITH_AVX2)
  if constexpr (std::is_same_v<T, float>) return rows.col_stride == 1 && avx2::enabled();
#endif
  return false;
}

template <typename scalar_t, typename T>
core::SoftmaxSums<T> sums_of(const core::LogitRows<scalar_t, T>& rows, int64_t r, bool vec) {
#if defined(FASTRL_WITH_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (vec) return avx2::row_sums(rows, r);
  }
#endif
  return row_sums(rows, r);
}

template <typename scalar_t, typename T>
void grad_of(const core::GradProblem<scalar_t, T>& p, int64_t r, bool vec) {
#if defined(FASTRL_WITH_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (vec) return avx2::grad_row(p, r);
  }
#endif
  scalar_t* grad = p.grad_row(r);
  for (int64_t i = 0; i < p.rows.vocab; ++i) grad[i] = p.grad_at(r, i, p.rows.scaled(r, i));
}

// Any row reduction (core/ppo_loss.h, RowProblem): its softmax sums per row, then write().
template <typename Problem>
void run_rows(const Problem& p) {
  using T = typename decltype(p.rows)::Acc;
  const auto& rows = p.rows;
  const bool vec = vectorized(rows);
  at::parallel_for(0, rows.num_rows, grain(rows.vocab), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (!rows.active(r)) {
        p.fill(r, T(0));
        continue;
      }
      TORCH_CHECK(rows.valid_action(r), "fastrl: actions[", r, "] = ", rows.actions[r],
                  " is outside [0, ", rows.vocab, ")");
      p.write(r, sums_of(rows, r, vec));
    }
  });
}

template <typename scalar_t, typename T>
void run_grad(const core::GradProblem<scalar_t, T>& p) {
  const int64_t V = p.rows.vocab;
  const bool vec = vectorized(p.rows);
  at::parallel_for(0, p.rows.num_rows, grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* grad = p.grad_row(r);
      if (p.zero(r)) {
        std::fill(grad, grad + V, scalar_t(0));
        continue;
      }
      grad_of(p, r, vec);
    }
  });
}

// The per-token terms of a problem whose row pass deferred them (sequence-level importance):
// [N] values only, no logits. Masked rows were filled by the row pass.
template <typename Problem>
void run_terms(const Problem& p) {
  at::parallel_for(0, p.rows.num_rows, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (p.rows.active(r)) p.write_terms(r);
    }
  });
}

// The backend of the ops in ops/ppo_loss.h: a row reduction, or the logits gradient.
struct Cpu {
  template <typename Problem>
  static void run(const Problem& p) { run_rows(p); }
  template <typename Problem>
  static void run_terms(const Problem& p) { cpu::run_terms(p); }
  template <typename scalar_t, typename T>
  static void run(const core::GradProblem<scalar_t, T>& p) { run_grad(p); }
};

}  // namespace
}  // namespace fastrl::cpu

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  fastrl::register_ppo_loss_ops<fastrl::cpu::Cpu>(m);
}
