// Tensor glue for the MinAtar ops, shared by the CPU and CUDA kernels: the id dispatch, argument
// checks (for callers of torch.ops.fastrl.* that skip fastrl.envs), output allocation and the
// translation of tensors into core::minatar::MinAtarBatch. The per-env tensors are those of the
// classic envs (ops/envs.h EnvTensors), with state int32 [N, 1 + S] (core/minatar/batch.h).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/minatar/batch.h"
#include "core/minatar/registry.h"
#include "ops/envs.h"

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

inline void check_minatar_vector(const at::Tensor& t, const char* name, at::ScalarType dtype,
                                 const at::Tensor& state) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == state.size(0), "fastrl: ", name, " must be [N] = [",
              state.size(0), "], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "fastrl: ", name, " must be ", dtype, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == state.device(), "fastrl: ", name, " is on ", t.device(),
              " but state is on ", state.device());
  TORCH_CHECK(t.is_contiguous(), "fastrl: ", name, " must be contiguous");
}

template <typename Game>
void check_minatar_tensors(const EnvTensors& e, const std::vector<double>& params) {
  const at::Tensor& s = e.state;
  constexpr int kRow = 1 + Game::kStateDim;
  TORCH_CHECK(s.dim() == 2 && s.size(1) == kRow, "fastrl: state must be [N, ", kRow, "], got ",
              s.sizes());
  TORCH_CHECK(s.scalar_type() == at::kInt, "fastrl: state must be int32, got ", s.scalar_type());
  TORCH_CHECK(s.is_contiguous(), "fastrl: state must be contiguous");
  TORCH_CHECK(e.episode_return.scalar_type() == at::kFloat ||
                  e.episode_return.scalar_type() == at::kDouble,
              "fastrl: episode_return must be float32 or float64, got ",
              e.episode_return.scalar_type());
  check_minatar_vector(e.elapsed, "elapsed", at::kInt, s);
  check_minatar_vector(e.episode_return, "episode_return", e.episode_return.scalar_type(), s);
  check_minatar_vector(e.autoreset, "autoreset", at::kBool, s);
  check_minatar_vector(e.resets, "resets", at::kLong, s);
  check_minatar_vector(e.seeds, "seeds", at::kLong, s);
  TORCH_CHECK(params.size() == core::minatar::kParams.size(), "fastrl: expected ",
              core::minatar::kParams.size(), " env params for MinAtar, got ", params.size());
  TORCH_CHECK_VALUE(params[0] >= 0.0 && params[0] <= 1.0,
                    "sticky_action_prob must be in [0, 1], got ", params[0]);
}

template <typename Game, typename T>
core::minatar::MinAtarBatch<Game, T> make_minatar_batch(const EnvTensors& e,
                                                        const std::vector<double>& params,
                                                        bool minimal) {
  core::minatar::MinAtarBatch<Game, T> b;
  b.n = e.state.size(0);
  b.state = e.state.data_ptr<int32_t>();
  b.elapsed = e.elapsed.data_ptr<int32_t>();
  b.episode_return = e.episode_return.data_ptr<T>();
  b.autoreset = reinterpret_cast<uint8_t*>(e.autoreset.data_ptr<bool>());
  b.resets = e.resets.data_ptr<int64_t>();
  b.seeds = e.seeds.data_ptr<int64_t>();
  if (minimal) {
    b.num_actions = static_cast<int32_t>(Game::kMinimalActions.size());
    for (int32_t k = 0; k < b.num_actions; ++k) b.action_set[k] = Game::kMinimalActions[k];
  }
  b.sticky_action_prob = params[0];
  b.ramping = params[1] != 0.0;
  return b;
}

// The set-up both backends share, as env_reset_op / env_step_op (ops/envs.h) for the classic envs.
template <typename Run>
at::Tensor minatar_reset_op(Run&& run, const std::string& env, const EnvTensors& e,
                            const std::vector<double>& params) {
  at::Tensor obs;
  visit_game(env, [&](auto tag, bool minimal) {
    using Game = typename decltype(tag)::type;
    check_minatar_tensors<Game>(e, params);
    AT_DISPATCH_FLOATING_TYPES(e.episode_return.scalar_type(), "fastrl::minatar_reset", [&] {
      obs = new_output({e.state.size(0), 10, 10, Game::kChannels},
                       e.state.options().dtype(at::kBool));
      auto b = make_minatar_batch<Game, scalar_t>(e, params, minimal);
      b.obs = reinterpret_cast<uint8_t*>(obs.data_ptr<bool>());
      if (b.n > 0) run(b);
    });
  });
  return obs;
}

// Outputs as env_step's (StepOutputs), obs and final_obs [N, 10, 10, C] bool (final_obs with
// 0 rows unless same_step), reward and final_return in episode_return's dtype.
template <typename Run>
StepOutputs minatar_step_op(Run&& run, const std::string& env, const EnvTensors& e,
                            const at::Tensor& action, const std::vector<double>& params,
                            int64_t max_episode_steps, bool same_step) {
  StepOutputs out;
  visit_game(env, [&](auto tag, bool minimal) {
    using Game = typename decltype(tag)::type;
    check_minatar_tensors<Game>(e, params);
    const int64_t n = e.state.size(0);
    TORCH_CHECK_VALUE(action.device() == e.state.device(), "actions are on ", action.device(),
                      " but the env is on ", e.state.device());
    TORCH_CHECK_TYPE(at::isIntegralType(action.scalar_type(), /*includeBool=*/false),
                     "actions must be an integer tensor for ", env, ", got ",
                     action.scalar_type());
    TORCH_CHECK_VALUE(action.dim() == 1 && action.size(0) == n, "actions must have shape (", n,
                      ",), got ", py_shape(action.sizes()));
    TORCH_CHECK_VALUE(max_episode_steps >= 0 && max_episode_steps <= core::kMaxElapsed,
                      "max_episode_steps must be in [1, 2**31 - 1], or 0 for no time limit, got ",
                      max_episode_steps);
    const at::Tensor a = action.to(at::kLong).contiguous();
    AT_DISPATCH_FLOATING_TYPES(e.episode_return.scalar_type(), "fastrl::minatar_step", [&] {
      const auto fopts = e.episode_return.options();
      const auto bopts = fopts.dtype(at::kBool);
      out = {new_output({n, 10, 10, Game::kChannels}, bopts), new_output({n}, fopts),
             new_output({n}, bopts), new_output({n}, bopts), new_output({n}, bopts),
             new_output({same_step ? n : 0, 10, 10, Game::kChannels}, bopts),
             new_output({n}, fopts), new_output({n}, fopts.dtype(at::kInt))};
      auto b = make_minatar_batch<Game, scalar_t>(e, params, minimal);
      auto bytes = [](const at::Tensor& t) {
        return reinterpret_cast<uint8_t*>(t.data_ptr<bool>());
      };
      b.action = a.data_ptr<int64_t>();
      b.obs = bytes(out.obs);
      b.reward = out.reward.template data_ptr<scalar_t>();
      b.terminated = bytes(out.terminated);
      b.truncated = bytes(out.truncated);
      b.done = bytes(out.done);
      b.final_obs = same_step ? bytes(out.final_obs) : nullptr;
      b.final_return = out.final_return.template data_ptr<scalar_t>();
      b.final_length = out.final_length.template data_ptr<int32_t>();
      b.max_episode_steps =
          max_episode_steps == 0 ? core::kNoTimeLimit : static_cast<uint32_t>(max_episode_steps);
      b.same_step = same_step;
      if (b.n > 0) run(b);
    });
  });
  return out;
}

// What the registered minatar_step returns: StepOutputs as the schema's tuple.
using StepTuple = decltype(StepOutputs{}.tuple());

namespace cpu {
at::Tensor minatar_reset(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, std::vector<double> params);
StepTuple minatar_step(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, const at::Tensor& action,
                         std::vector<double> params, int64_t max_episode_steps, bool same_step);
}  // namespace cpu

namespace cuda {
at::Tensor minatar_reset(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, std::vector<double> params);
StepTuple minatar_step(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, const at::Tensor& action,
                         std::vector<double> params, int64_t max_episode_steps, bool same_step);
}  // namespace cuda

}  // namespace fastrl
