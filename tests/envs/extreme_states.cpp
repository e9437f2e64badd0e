// Steps every env, float32 and float64, through the CPU kernel's loop (cpu/env_kernel.h) from
// extreme inputs: huge, infinite and NaN states and actions (discrete ones out of range too, as
// an unchecked GPU step may pass them), episode lengths at 2^31 - 1, reset counters at 2^63 - 1,
// with and without a time limit, in both autoreset modes. Built with
// -fsanitize=undefined,float-cast-overflow by tests/envs/test_errors.py: any undefined behaviour
// aborts, and a loop that never ends fails on the test's timeout.
#include <cstdio>
#include <limits>
#include <tuple>
#include <type_traits>

#include "core/envs/registry.h"
#include "cpu/env_kernel.h"

namespace core = fastrl::core;

template <bool kSameStep, template <typename> class E, typename T>
void run(uint32_t limit) {
  using Env = E<T>;
  constexpr int n = 24;
  constexpr int S = Env::kStateDim, O = Env::kObsDim;
  const T big = std::numeric_limits<T>::max(), inf = std::numeric_limits<T>::infinity();
  const T values[] = {big, -big, inf, -inf, std::numeric_limits<T>::quiet_NaN(), T(1e12), T(-3e9), T(0)};
  constexpr int kValues = sizeof(values) / sizeof(values[0]);
  static T state[S * n], ret[n], obs[n * O], final_obs[n * O], reward[n], final_return[n];
  static uint8_t autoreset[n], terminated[n], truncated[n], done[n];
  static int64_t resets[n], seeds[n];
  static int32_t elapsed[n], final_length[n];
  static typename Env::Action action[n];
  for (int j = 0; j < n; ++j) {
    for (int k = 0; k < S; ++k) state[k * n + j] = values[(j + k) % kValues];
    // Far out but finite, slow: Acrobot's float64 angle loops would run for minutes.
    if (j == 0) for (int k = 0; k < S; ++k) state[k * n] = k < 2 ? T(k ? -1e12 : 3e11) : T(0.5);
    elapsed[j] = j % 3 == 0 ? 0 : 2147483647 - j % 2;
    ret[j] = T(0);
    autoreset[j] = static_cast<uint8_t>(j % 2);
    resets[j] = j % 2 ? std::numeric_limits<int64_t>::max() : j;
    seeds[j] = j % 2 ? std::numeric_limits<int64_t>::max() : j;
    if constexpr (std::is_integral<typename Env::Action>::value) {
      // In range, and out of it: validate=False on a GPU lets any action reach the same core.
      const int64_t wild[] = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                              -1, int64_t(1) << 31, Env::kNumActions};
      action[j] = j < 5 ? wild[j] : j % Env::kNumActions;
    } else {
      action[j] = values[j % kValues];
    }
  }
  double params[Env::kParams.size() + 1];  // the defaults (+ 1: no zero-length array)
  for (size_t i = 0; i < Env::kParams.size(); ++i) params[i] = Env::kParams[i].default_value;
  core::EnvBatch<Env, T> b;
  // The batch's pointers, by group: envs, per-env counters, step outputs.
  std::tie(b.n, b.state, b.action, b.params, b.max_episode_steps, b.same_step) =
      std::tuple(n, state, action, Env::params(params), limit, kSameStep);
  std::tie(b.elapsed, b.episode_return, b.autoreset, b.resets, b.seeds) =
      std::tuple(elapsed, ret, autoreset, resets, seeds);
  std::tie(b.obs, b.reward, b.terminated, b.truncated, b.done, b.final_return, b.final_length) =
      std::tuple(obs, reward, terminated, truncated, done, final_return, final_length);
  b.final_obs = kSameStep ? final_obs : nullptr;
  for (int step = 0; step < 3; ++step) fastrl::cpu::step_range<kSameStep>(b, 0, n);
  for (int j = 0; j < n; ++j) {
    if (elapsed[j] < 0) {
      std::printf("negative episode length %d\n", elapsed[j]);
      std::exit(1);
    }
  }
}

template <template <typename> class E>
void run_all() {
  for (uint32_t limit : {core::kNoTimeLimit, 2147483647u, 1u}) {
    run<false, E, float>(limit);
    run<true, E, float>(limit);
    run<false, E, double>(limit);
    run<true, E, double>(limit);
  }
}

int main() {
#define FASTRL_RUN_ALL(Env) run_all<core::Env>();
  FASTRL_NATIVE_ENVS(FASTRL_RUN_ALL)
  std::printf("ok\n");
  return 0;
}
