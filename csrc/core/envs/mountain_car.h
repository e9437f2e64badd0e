// MountainCar-v0, mirroring gymnasium/envs/classic_control/mountain_car.py (gymnasium 1.4).
// State = observation = [position, velocity]; actions 0 (push left), 1 (none), 2 (push right);
// -1 reward per step; the episode ends on reaching position 0.5 with velocity >= goal_velocity.
#pragma once

#include "core/envs/env.h"
#include "core/envs/math.h"
#include "core/rng.h"

namespace fastrl::core {

template <typename T>
struct MountainCar : EnvDims<2, 2, 1>, DiscreteActions<3> {
  static constexpr const char* kId = "MountainCar-v0";
  static constexpr std::array kParams{real_param("goal_velocity", 0.0)};

  // The bounds are gymnasium's constants, carried as run-time values: with compile-time ones GCC
  // folds `position == min_position` after the clip into selects of booleans it cannot
  // vectorize, and the CPU loop runs several times slower (docs/envs.md).
  struct Params {
    T goal_velocity;
    T min_position, max_position, max_speed;
  };
  static Params params(const double* p) {
    return {static_cast<T>(p[0]), T(-1.2), T(0.6), T(0.07)};
  }

  template <typename Rng>  // ResetStream, or the CPU kernel's precomputed words
  FASTRL_HD static void reset(const Params&, Rng& rng, T* s) {
    s[0] = static_cast<T>(rng.uniform(-0.6, -0.4));
    s[1] = T(0);
  }

  FASTRL_HD static void step(const Params& p, T* s, Action action, int32_t, T& reward,
                             bool& terminated) {
    const T min_position = p.min_position, max_position = p.max_position, max_speed = p.max_speed;
    T position = s[0], velocity = s[1];
    // The action through int32 (it is 0, 1 or 2): SSE2/AVX2 convert int32 lanes to float, not int64.
    // In T: an unchecked action (validate=False on a GPU) cannot overflow the subtraction.
    const T force = static_cast<T>(static_cast<int32_t>(action)) - T(1);
    velocity += force * T(0.001) + cos_(T(3) * position) * -T(0.0025);
    velocity = velocity < -max_speed ? -max_speed : (velocity > max_speed ? max_speed : velocity);
    position += velocity;
    position = position < min_position ? min_position : (position > max_position ? max_position : position);
    if ((position == min_position) & (velocity < 0)) velocity = T(0);
    terminated = (position >= T(0.5)) & (velocity >= p.goal_velocity);
    reward = T(-1);
    s[0] = position;
    s[1] = velocity;
  }

  FASTRL_HD static void observe(const Params&, const T* s, T* obs) {
    obs[0] = s[0];
    obs[1] = s[1];
  }
};

}  // namespace fastrl::core
