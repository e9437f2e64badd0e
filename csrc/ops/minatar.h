// The MinAtar ops, written once for the CPU and CUDA kernels (templates over the env backends of
// cpu/envs.cpp and cuda/envs.cu, as ops/envs.h's env ops): the id dispatch, argument checks (for
// callers of torch.ops.fastrl.* that skip fastrl.envs), output allocation and the translation of
// tensors into core::minatar::MinAtarBatch. The per-env tensors and step outputs are those of
// the classic envs (ops/envs.h), with state int32 [N, 1 + S] (core/minatar/batch.h) and
// observations bool [N, 10, 10, C].
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <string>

#include "core/minatar/batch.h"
#include "core/minatar/registry.h"
#include "ops/envs.h"
#include "ops/register.h"

namespace fastrl {

template <typename G>
struct GameTag {
  using type = G;
};

// Calls fn(GameTag<Game>{}, minimal) for the id "MinAtar/<Game::kName>-v0" (all six actions,
// minimal false) or "-v1" (the minimal action set).
template <typename Fn>
void visit_game(const std::string& env, Fn&& fn) {
#define FASTRL_VISIT_GAME(Game)                                                     \
  {                                                                                 \
    const std::string id = std::string("MinAtar/") + core::minatar::Game::kName;    \
    if (env == id + "-v0") return fn(GameTag<core::minatar::Game>{}, false);        \
    if (env == id + "-v1") return fn(GameTag<core::minatar::Game>{}, true);         \
  }
  FASTRL_MINATAR_GAMES(FASTRL_VISIT_GAME)
#undef FASTRL_VISIT_GAME
  TORCH_CHECK_VALUE(false, "fastrl: unknown MinAtar env '", env, "'");
}

template <typename Game>
void check_minatar_tensors(const EnvTensors& e, at::ArrayRef<double> params) {
  const at::Tensor& s = e.state;
  constexpr int kRow = 1 + Game::kStateDim;
  TORCH_CHECK(s.dim() == 2 && s.size(1) == kRow, "fastrl: state must be [N, ", kRow, "], got ",
              s.sizes());
  TORCH_CHECK(s.scalar_type() == at::kInt, "fastrl: state must be int32, got ", s.scalar_type());
  TORCH_CHECK(s.is_contiguous(), "fastrl: state must be contiguous");
  const at::ScalarType return_dtype = e.episode_return.scalar_type();
  TORCH_CHECK(return_dtype == at::kFloat || return_dtype == at::kDouble,
              "fastrl: episode_return must be float32 or float64, got ", return_dtype);
  check_counters(e, s.size(0), return_dtype);
  TORCH_CHECK(params.size() == core::minatar::kParams.size(), "fastrl: expected ",
              core::minatar::kParams.size(), " env params for MinAtar, got ", params.size());
  TORCH_CHECK_VALUE(params[0] >= 0.0 && params[0] <= 1.0,
                    "sticky_action_prob must be in [0, 1], got ", params[0]);
}

template <typename Game, typename T>
core::minatar::MinAtarBatch<Game, T> make_minatar_batch(const EnvTensors& e,
                                                        at::ArrayRef<double> params,
                                                        bool minimal) {
  core::minatar::MinAtarBatch<Game, T> b;
  bind_counters(b, e, e.state.size(0));
  b.state = e.state.data_ptr<int32_t>();
  if (minimal) {
    b.num_actions = static_cast<int32_t>(Game::kMinimalActions.size());
    for (int32_t k = 0; k < b.num_actions; ++k) b.action_set[k] = Game::kMinimalActions[k];
  }
  b.sticky_action_prob = params[0];
  b.ramping = params[1] != 0.0;
  return b;
}

inline uint8_t* bytes(const at::Tensor& t) { return reinterpret_cast<uint8_t*>(t.data_ptr<bool>()); }

// The two ops, written once for every backend as env_reset / env_step (ops/envs.h):
// `Backend::reset(batch)` and `Backend::step(batch, same_step)` on a MinAtarBatch. Outputs as
// env_step's (StepOutputs), obs and final_obs bool [N, 10, 10, C], reward and final_return in
// episode_return's dtype.
template <typename Backend>
at::Tensor minatar_reset(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, at::ArrayRef<double> params, int64_t first_env) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  at::Tensor obs;
  visit_game(env, [&](auto tag, bool minimal) {
    using Game = typename decltype(tag)::type;
    check_minatar_tensors<Game>(e, params);
    check_first_env(first_env, e.state.size(0));
    const c10::DeviceGuard guard(state.device());  // after the checks (ops/envs.h says why)
    AT_DISPATCH_FLOATING_TYPES(e.episode_return.scalar_type(), "fastrl::minatar_reset", [&] {
      obs = new_output({e.state.size(0), 10, 10, Game::kChannels},
                       e.state.options().dtype(at::kBool));
      auto b = make_minatar_batch<Game, scalar_t>(e, params, minimal);
      b.first_env = first_env;
      b.obs = bytes(obs);
      if (b.n > 0) Backend::reset(b);
    });
  });
  return obs;
}

template <typename Backend>
StepTuple minatar_step(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                       const at::Tensor& episode_return, const at::Tensor& autoreset,
                       const at::Tensor& resets, const at::Tensor& seeds, const at::Tensor& action,
                       at::ArrayRef<double> params, int64_t max_episode_steps, bool same_step,
                       int64_t first_env) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  StepOutputs out;
  visit_game(env, [&](auto tag, bool minimal) {
    using Game = typename decltype(tag)::type;
    check_minatar_tensors<Game>(e, params);
    const int64_t n = e.state.size(0);
    const at::Tensor a = checked_discrete_action(action, n, e.state, env);
    const uint32_t time_limit = checked_time_limit(max_episode_steps);
    check_first_env(first_env, n);
    const c10::DeviceGuard guard(state.device());  // after the checks (ops/envs.h says why)
    AT_DISPATCH_FLOATING_TYPES(e.episode_return.scalar_type(), "fastrl::minatar_step", [&] {
      const auto fopts = e.episode_return.options();
      out = new_step_outputs(n, {10, 10, Game::kChannels}, fopts.dtype(at::kBool), fopts,
                             same_step);
      auto b = make_minatar_batch<Game, scalar_t>(e, params, minimal);
      bind_step(b, out, time_limit, same_step);
      b.first_env = first_env;
      b.action = a.data_ptr<int64_t>();
      b.obs = bytes(out.obs);
      b.final_obs = same_step ? bytes(out.final_obs) : nullptr;
      if (b.n > 0) Backend::step(b, same_step);
    });
  });
  return out.tuple();
}

// The ops of both env families (ops/envs.h, this file), registered with each env backend
// (cpu/envs.cpp, cuda/envs.cu, whose reset() and step() take either family's batch).
template <typename Backend>
void register_env_ops(torch::Library& m) {
  FASTRL_IMPL(m, env_reset, Backend);
  FASTRL_IMPL(m, env_step, Backend);
  FASTRL_IMPL(m, minatar_reset, Backend);
  FASTRL_IMPL(m, minatar_step, Backend);
}

}  // namespace fastrl
