// CPU kernels of the MinAtar games (game logic in core/minatar/, the batched step in
// core/minatar/batch.h): a scalar loop over envs, split over torch's threads above
// kMinAtarGrain envs. A game's frame is branchy integer code on a few hundred bytes of state and
// observation per env, so there is nothing to vectorize across envs; writing the observations
// ([N, 10, 10, C] bytes) is most of the work.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/minatar.h"

namespace fastrl::cpu {
namespace {

// Batches up to this many envs run on the calling thread: a parallel region on a loaded 2-core
// machine waits for a core (docs/ARCHITECTURE.md, "Threads on small machines").
constexpr int64_t kMinAtarGrain = 4096;

// Actions in [0, num_actions), checked before any env steps (compared as unsigned, so negative
// ones fail too).
template <typename B>
void check_action_values(const B& b) {
  uint64_t bad = 0;
  for (int64_t j = 0; j < b.n; ++j) {
    bad |= static_cast<uint64_t>(b.action[j]) >= static_cast<uint64_t>(b.num_actions);
  }
  TORCH_CHECK_VALUE(bad == 0, "actions must be in [0, ", b.num_actions - 1, "]");
}

}  // namespace

at::Tensor minatar_reset(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, std::vector<double> params) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return minatar_reset_op(
      [](const auto& b) {
        at::parallel_for(0, b.n, kMinAtarGrain, [&](int64_t begin, int64_t end) {
          for (int64_t j = begin; j < end; ++j) core::minatar::reset_env(b, j);
        });
      },
      env, e, params);
}

StepTuple minatar_step(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, const at::Tensor& action,
                         std::vector<double> params, int64_t max_episode_steps, bool same_step) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return minatar_step_op(
      [](const auto& b) {
        check_action_values(b);
        at::parallel_for(0, b.n, kMinAtarGrain, [&](int64_t begin, int64_t end) {
          for (int64_t j = begin; j < end; ++j) core::minatar::step_env(b, j);
        });
      },
      env, e, action, params, max_episode_steps, same_step).tuple();
}

}  // namespace fastrl::cpu

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  m.impl("minatar_reset", &fastrl::cpu::minatar_reset);
  m.impl("minatar_step", &fastrl::cpu::minatar_step);
}
