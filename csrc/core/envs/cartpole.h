// CartPole-v1, mirroring gymnasium/envs/classic_control/cartpole.py (gymnasium 1.4) operation by
// operation: Euler integration, +1 reward per step including the terminating one (or
// Sutton-Barto's 0 / -1), termination at |x| > 2.4 or |theta| > 12 degrees.
// State [x, x_dot, theta, theta_dot]; the observation is the state.
#pragma once

#include "core/envs/env.h"
#include "core/envs/math.h"
#include "core/rng.h"

namespace fastrl::core {

template <typename T>
struct CartPole : EnvDims<4, 4, 4>, DiscreteActions<2> {  // actions 0: push left, 1: push right
  static constexpr const char* kId = "CartPole-v1";
  static constexpr std::array kParams{flag_param("sutton_barto_reward", false)};

  // The rewards of a step that terminates and of one that does not: 1 and 1, or Sutton-Barto's
  // -1 and 0 (values rather than a flag, so the loop picks one with a vector select).
  struct Params {
    T reward_terminated, reward_alive;
  };
  static Params params(const double* p) {
    return p[0] != 0.0 ? Params{T(-1), T(0)} : Params{T(1), T(1)};
  }

  template <typename Rng>  // ResetStream, or the CPU kernel's precomputed words
  FASTRL_HD static void reset(const Params&, Rng& rng, T* s) {
    for (int k = 0; k < 4; ++k) s[k] = static_cast<T>(rng.uniform(-0.05, 0.05));
  }

  FASTRL_HD static void step(const Params& p, T* s, Action action, int32_t, T& reward,
                             bool& terminated) {
    const T gravity = T(9.8), masspole = T(0.1), length = T(0.5), tau = T(0.02);
    const T total_mass = T(0.1 + 1.0), polemass_length = T(0.1 * 0.5);
    const T x = s[0], x_dot = s[1], theta = s[2], theta_dot = s[3];
    // action == 1 from 32-bit halves: SSE2 has no 64-bit compare, and this keeps the loop vector.
    const uint64_t a = static_cast<uint64_t>(action);
    const bool right = (static_cast<uint32_t>(a) == 1u) & (static_cast<uint32_t>(a >> 32) == 0u);
    const T force = right ? T(10.0) : T(-10.0);
    const T costheta = cos_(theta), sintheta = sin_(theta);
    const T temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
    const T thetaacc = (gravity * sintheta - costheta * temp) /
                       (length * (T(4.0 / 3.0) - masspole * (costheta * costheta) / total_mass));
    const T xacc = temp - polemass_length * thetaacc * costheta / total_mass;
    s[0] = x + tau * x_dot;
    s[1] = x_dot + tau * xacc;
    s[2] = theta + tau * theta_dot;
    s[3] = theta_dot + tau * thetaacc;
    const T x_threshold = T(2.4), theta_threshold = T(12 * 2 * 3.141592653589793 / 360);
    // Bitwise | keeps the loop free of branches (and vectorizable).
    terminated = (s[0] < -x_threshold) | (s[0] > x_threshold) | (s[2] < -theta_threshold) |
                 (s[2] > theta_threshold);
    reward = terminated ? p.reward_terminated : p.reward_alive;
  }

  FASTRL_HD static void observe(const Params&, const T* s, T* obs) {
    for (int k = 0; k < 4; ++k) obs[k] = s[k];
  }
};

}  // namespace fastrl::core
