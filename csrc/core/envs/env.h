// What every environment header declares. An env is a class template over the float type T
// (struct CartPole<T>, ...) listed once in core/envs/registry.h, with:
//   kId                  gymnasium's id, "CartPole-v1"
//   kStateDim, kObsDim   rows of the SoA state (the layout of gymnasium's env.unwrapped.state)
//                        and the observation size
//   kResetDraws          uniforms a reset draws from the env's Philox stream
//                        (these three from the base EnvDims<kStateDim, kObsDim, kResetDraws>)
//   Action               int64_t with kNumActions actions (the base DiscreteActions<n>), or T
//                        for one continuous dimension (ContinuousAction<T>)
//   kParams              gymnasium's keyword arguments with their defaults: the `params` of the
//                        env ops, in this order (fastrl.envs reads it through _C.native_envs())
//   Params, params(p)    the values the physics reads, from p[0 .. kParams.size())
//   reset(params, rng, s)                              a new episode's state s [kStateDim]
//   step(params, s, action, elapsed, reward, terminated)  one step of s, in place
//   observe(params, s, obs)                            obs [kObsDim] of state s
// core/envs/batch.h runs them over a batch; the CPU and CUDA kernels run batch.h.
#pragma once

#include <array>
#include <cstdint>

namespace fastrl::core {

// One keyword argument of an env: its name in gymnasium's constructor and its default.
struct EnvParam {
  const char* name;
  double default_value;
  bool flag;  // a bool argument: the op takes it as 0 or 1
};

constexpr EnvParam real_param(const char* name, double default_value) {
  return {name, default_value, false};
}
constexpr EnvParam flag_param(const char* name, bool default_value) {
  return {name, default_value ? 1.0 : 0.0, true};
}

// An env's dimensions, as a base class: struct CartPole : EnvDims<4, 4, 4>.
template <int kState, int kObs, int kDraws>
struct EnvDims {
  static constexpr int kStateDim = kState;
  static constexpr int kObsDim = kObs;
  static constexpr int kResetDraws = kDraws;
};

// The two kinds of action, as a base class: discrete ones 0 .. n - 1, or one continuous
// dimension in the env's float type.
template <int64_t n>
struct DiscreteActions {
  using Action = int64_t;
  static constexpr int64_t kNumActions = n;
};

template <typename T>
struct ContinuousAction {
  using Action = T;
};

}  // namespace fastrl::core
