// CPU kernels for the batched environments: the classic envs (math in core/envs/, the step loop
// in cpu/env_kernel.h) and the MinAtar games (core/minatar/).
//
// float32 is the fast path: its sin/cos are the vectorizable polynomials of core/envs/math.h.
// Threads: at::parallel_for with a grain of kThreadGrain envs (cpu/env_kernel.h), so batches up
// to kThreadGrain run on the calling thread and larger ones are split into
// min(threads, ceil(N / kThreadGrain)) equal ranges, one per thread (why: docs/ARCHITECTURE.md,
// "Threads on small machines"); from 65536 envs two threads win 1.5x.
//
// MinAtar: cpu/minatar_kernel.h steps envs one by one (a game's frame is branchy integer code
// on one env's state row), with the observation clears and the Philox words of a chunk of envs
// done at once; split over torch's threads above kMinAtarGrain envs.
#include <ATen/Parallel.h>

#include <type_traits>

#include "cpu/env_kernel.h"
#include "cpu/envs_avx2.h"
#include "cpu/minatar_kernel.h"
#include "ops/envs.h"
#include "ops/minatar.h"

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

// MinAtar batches up to this many envs run on the calling thread (a parallel region on a
// loaded 2-core machine waits for a core).
constexpr int64_t kMinAtarGrain = 4096;

// MinAtar actions in [0, num_actions), checked before any env steps (compared as unsigned, so
// negative ones fail too).
template <typename Game, typename T>
void check_action_values(const core::minatar::MinAtarBatch<Game, T>& b) {
  uint64_t bad = 0;
  for (int64_t j = 0; j < b.n; ++j) {
    bad |= static_cast<uint64_t>(b.action[j]) >= static_cast<uint64_t>(b.num_actions);
  }
  TORCH_CHECK_VALUE(bad == 0, "actions must be in [0, ", b.num_actions - 1, "]");
}

// Calls f(j) for every env of the batch, split over threads above `grain` envs.
template <typename F>
void for_each_env(int64_t n, int64_t grain, const F& f) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) f(j);
  });
}

// The backend of the ops in ops/envs.h and ops/minatar.h.
struct Cpu {
  template <typename Env, typename T>
  static void reset(const core::EnvBatch<Env, T>& b) {
    for_each_env(b.n, kThreadGrain, [&](int64_t j) { core::reset_env(b, j); });
  }
  template <typename Env, typename T>
  static void step(const core::EnvBatch<Env, T>& b, bool same_step) {
    check_action_values(b);
    same_step ? run_step<true>(b) : run_step<false>(b);
  }

  template <typename Game, typename T>
  static void reset(const core::minatar::MinAtarBatch<Game, T>& b) {
    for_each_env(b.n, kMinAtarGrain, [&](int64_t j) { core::minatar::reset_env(b, j); });
  }
  template <typename Game, typename T>
  static void step(const core::minatar::MinAtarBatch<Game, T>& b, bool /*same_step: in b*/) {
    check_action_values(b);
    at::parallel_for(0, b.n, kMinAtarGrain, [&b](int64_t begin, int64_t end) {
#if defined(FASTRL_WITH_AVX2)
      if (avx2::enabled()) return avx2::minatar_step_range(b, begin, end);
#endif
      minatar_step_range(b, begin, end);
    });
  }
};

}  // namespace
}  // namespace fastrl::cpu

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  fastrl::register_env_ops<fastrl::cpu::Cpu>(m);
}
