// CPU kernels for the batched environments (math in core/envs/, the step loop in
// cpu/env_kernel.h).
//
// float32 is the fast path: its sin/cos are the vectorizable polynomials of core/envs/math.h.
// Threads: at::parallel_for with a grain of kThreadGrain envs (cpu/env_kernel.h), so batches up
// to kThreadGrain run on the calling thread and larger ones are split into
// min(threads, ceil(N / kThreadGrain)) equal ranges, one per thread (why: docs/ARCHITECTURE.md,
// "Threads on small machines"); from 65536 envs two threads win 1.5x.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>

#include "cpu/env_kernel.h"
#include "cpu/envs_avx2.h"
#include "ops/envs.h"

namespace fastrl::cpu {
namespace {

// Action values checked in the same C++ call (ValueError in Python), instead of three torch ops
// in the wrapper: discrete ones in [0, kNumActions), continuous ones not NaN.
template <typename Env, typename T>
void check_action_values(const core::EnvBatch<Env, T>& b) {
#if defined(FASTRL_WITH_AVX2)
  const bool ok = avx2::enabled() ? avx2::actions_valid(b) : actions_valid(b);
#else
  const bool ok = actions_valid(b);
#endif
  if constexpr (std::is_integral<typename Env::Action>::value) {
    TORCH_CHECK_VALUE(ok, "actions must be in [0, ", Env::kNumActions - 1, "]");
  } else {
    TORCH_CHECK_VALUE(ok, "actions contain NaN");
  }
}

template <bool kSameStep, typename Env, typename T>
void run_step(const core::EnvBatch<Env, T> b) {
  at::parallel_for(0, b.n, kThreadGrain, [&b](int64_t begin, int64_t end) {
#if defined(FASTRL_WITH_AVX2)
    if (avx2::enabled()) return avx2::step_range<kSameStep>(b, begin, end);
#endif
    step_range<kSameStep>(b, begin, end);
  });
}

// The backend of the ops in ops/envs.h.
struct Cpu {
  template <typename Env, typename T>
  static void reset(const core::EnvBatch<Env, T>& b) {
    at::parallel_for(0, b.n, kThreadGrain, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) core::reset_env(b, j);
    });
  }
  template <typename Env, typename T>
  static void step(const core::EnvBatch<Env, T>& b, bool same_step) {
    check_action_values(b);
    same_step ? run_step<true>(b) : run_step<false>(b);
  }
};

}  // namespace
}  // namespace fastrl::cpu

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  m.impl("env_reset", TORCH_FN(fastrl::env_reset<fastrl::cpu::Cpu>));
  m.impl("env_step", TORCH_FN(fastrl::env_step<fastrl::cpu::Cpu>));
}
