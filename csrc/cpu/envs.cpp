// CPU kernels for the batched environments (math in core/envs/, the step loop in
// cpu/env_kernel.h).
//
// float32 is the fast path: its sin/cos are the vectorizable polynomials of core/envs/math.h.
// Threads: at::parallel_for with a grain of kGrain envs, so batches up to kGrain run on the
// calling thread. Measured on the 2-core VM at 4096 CartPoles (~14 us of work): two threads are
// 1.2x faster when the second core is idle but 1.5x slower when another process keeps it busy
// (the team waits for a core it cannot get); from 65536 envs two threads win 1.5x either way.
#include <ATen/Parallel.h>

#include <type_traits>

#include "cpu/env_kernel.h"
#include "cpu/envs_avx2.h"
#include "ops/envs.h"

namespace fastrl::cpu {
namespace {

constexpr int64_t kGrain = 16384;

// Action values checked in the same C++ call (ValueError in Python), instead of three torch ops
// in the wrapper; discrete: in [0, kNumActions), continuous: not NaN. Before the step, which
// must not start on bad input. Written as OR-reductions of 32-bit lanes so that SSE2 vectorizes
// them (a loop of && on int64 compares runs at one action a cycle: 10% of a CartPole step).
template <typename Env, typename T>
void check_action_values(const core::EnvBatch<Env, T>& b) {
  using Action = typename Env::Action;
  uint32_t bad = 0;
  if constexpr (std::is_integral<Action>::value) {
    // Unsigned, so negative actions are huge: bad unless the high half is 0 and the low < k.
#pragma omp simd reduction(| : bad)
    for (int64_t j = 0; j < b.n; ++j) {
      const uint64_t a = static_cast<uint64_t>(b.action[j]);
      bad |= static_cast<uint32_t>(a >> 32) |
             static_cast<uint32_t>(static_cast<uint32_t>(a) >= Env::kNumActions);
    }
    TORCH_CHECK_VALUE(bad == 0, "actions must be in [0, ", Env::kNumActions - 1, "]");
  } else {
#pragma omp simd reduction(| : bad)
    for (int64_t j = 0; j < b.n; ++j) bad |= static_cast<uint32_t>(b.action[j] != b.action[j]);
    TORCH_CHECK_VALUE(bad == 0, "actions contain NaN");
  }
}

template <bool kSameStep, typename Env, typename T>
void run_step(const core::EnvBatch<Env, T> b) {
  at::parallel_for(0, b.n, kGrain, [&b](int64_t begin, int64_t end) {
#if defined(FASTRL_WITH_AVX2)
    if (avx2::enabled()) return avx2::step_range<kSameStep>(b, begin, end);
#endif
    step_range<kSameStep>(b, begin, end);
  });
}

}  // namespace

at::Tensor env_reset(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                     const at::Tensor& episode_return, const at::Tensor& autoreset,
                     const at::Tensor& resets, const at::Tensor& seeds,
                     std::vector<double> params) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return env_reset_op(
      [](const auto& b) {
        at::parallel_for(0, b.n, kGrain, [&](int64_t begin, int64_t end) {
          for (int64_t j = begin; j < end; ++j) core::reset_env(b, j);
        });
      },
      env, e, params);
}

StepOutputs env_step(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                     const at::Tensor& episode_return, const at::Tensor& autoreset,
                     const at::Tensor& resets, const at::Tensor& seeds, const at::Tensor& action,
                     std::vector<double> params, int64_t max_episode_steps, bool same_step) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return env_step_op(
      [same_step](const auto& b) {
        check_action_values(b);
        same_step ? run_step<true>(b) : run_step<false>(b);
      },
      env, e, action, params, max_episode_steps, same_step);
}

}  // namespace fastrl::cpu
