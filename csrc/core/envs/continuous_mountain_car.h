// MountainCarContinuous-v0, mirroring gymnasium/envs/classic_control/continuous_mountain_car.py
// (gymnasium 1.4). State = observation = [position, velocity]; one force action in [-1, 1];
// reward 100 on reaching position 0.45 (with velocity >= goal_velocity) minus 0.1 * action^2.
//
// gymnasium mixes precisions here, and so must a bit-exact copy: the state is float64 right
// after reset and float32 after every step (it is stored with dtype=np.float32), the action is
// float32, and numpy promotes float32 with a Python float to float32. So the first step of an
// episode (elapsed == 0) computes in double, later ones in float, and an action outside [-1, 1]
// becomes the Python float bound (double arithmetic). The cosine is always Python's math.cos.
// That is the float64 env; the float32 one (the fast path) computes every step in float32.
#pragma once

#include "core/envs/env.h"
#include "core/envs/math.h"
#include "core/rng.h"

namespace fastrl::core {

template <typename T>
struct MountainCarContinuous {
  static constexpr const char* kId = "MountainCarContinuous-v0";
  static constexpr int kStateDim = 2;
  static constexpr int kObsDim = 2;
  static constexpr int kResetDraws = 1;  // uniforms per reset
  using Action = T;
  // gymnasium's keyword arguments and defaults; params() reads their values in this order.
  static constexpr std::array kParams{real_param("goal_velocity", 0.0)};

  // The float32 path's bounds travel as run-time values, for the reason given in
  // mountain_car.h (GCC would fold the tests on clipped values into unvectorizable selects).
  struct Params {
    double goal_velocity;
    float min_position, max_position, max_speed;
  };
  static Params params(const double* p) { return {p[0], -1.2f, 0.6f, 0.07f}; }

  template <typename Rng>  // ResetStream, or the CPU kernel's precomputed words
  FASTRL_HD static void reset(const Params&, Rng& rng, T* s) {
    s[0] = static_cast<T>(rng.uniform(-0.6, -0.4));
    s[1] = T(0);
  }

  FASTRL_HD static void step(const Params& p, T* s, Action action, int32_t elapsed, T& reward,
                             bool& terminated) {
    if (!kExact<T>) return step_float32(p, s, action, reward, terminated);
    const float a = static_cast<float>(action);
    const bool clipped = (a < -1.0f) | (a > 1.0f);
    const double bound = a < -1.0f ? -1.0 : 1.0;
    if (elapsed == 0) {  // float64 state
      double position = s[0], velocity = s[1];
      const double c = 0.0025 * ::cos(3.0 * position);
      velocity += clipped ? bound * 0.0015 - c : static_cast<double>(a * 0.0015f - static_cast<float>(c));
      if (velocity > 0.07) velocity = 0.07;
      if (velocity < -0.07) velocity = -0.07;
      position += velocity;
      if (position > 0.6) position = 0.6;
      if (position < -1.2) position = -1.2;
      if (position == -1.2 && velocity < 0) velocity = 0.0;
      terminated = position >= 0.45 && velocity >= p.goal_velocity;
      s[0] = static_cast<T>(static_cast<float>(position));
      s[1] = static_cast<T>(static_cast<float>(velocity));
    } else {  // float32 state: Python float constants act as float32
      float position = static_cast<float>(s[0]), velocity = static_cast<float>(s[1]);
      const double c = 0.0025 * ::cos(static_cast<double>(3.0f * position));
      velocity += clipped ? static_cast<float>(bound * 0.0015 - c) : a * 0.0015f - static_cast<float>(c);
      if (velocity > 0.07f) velocity = 0.07f;
      if (velocity < -0.07f) velocity = -0.07f;
      position += velocity;
      if (position > 0.6f) position = 0.6f;
      if (position < -1.2f) position = -1.2f;
      if (position == -1.2f && velocity < 0) velocity = 0.0f;
      terminated = position >= 0.45f && velocity >= static_cast<float>(p.goal_velocity);
      s[0] = static_cast<T>(position);
      s[1] = static_cast<T>(velocity);
    }
    // math.pow(action[0], 2) of the unclipped float32 action is exact in double.
    const double aa = static_cast<double>(a);
    reward = static_cast<T>((terminated ? 100.0 : 0.0) - aa * aa * 0.1);
  }

  // The float32 env: every step in float32 with the vectorizable cosine (the fallback computes
  // the same way), within float32 rounding of gymnasium's mixed precisions.
  FASTRL_HD static void step_float32(const Params& p, T* s, Action action, T& reward,
                                     bool& terminated) {
    const float a = static_cast<float>(action);
    const float force = a < -1.0f ? -1.0f : (a > 1.0f ? 1.0f : a);
    float position = static_cast<float>(s[0]), velocity = static_cast<float>(s[1]);
    velocity += force * 0.0015f - 0.0025f * cos_(3.0f * position);
    velocity = velocity > p.max_speed ? p.max_speed : velocity;
    velocity = velocity < -p.max_speed ? -p.max_speed : velocity;
    position += velocity;
    position = position > p.max_position ? p.max_position : position;
    position = position < p.min_position ? p.min_position : position;
    velocity = (position == p.min_position) & (velocity < 0.0f) ? 0.0f : velocity;
    terminated = (position >= 0.45f) & (velocity >= static_cast<float>(p.goal_velocity));
    s[0] = static_cast<T>(position);
    s[1] = static_cast<T>(velocity);
    reward = static_cast<T>((terminated ? 100.0f : 0.0f) - a * a * 0.1f);
  }

  FASTRL_HD static void observe(const Params&, const T* s, T* obs) {
    obs[0] = s[0];
    obs[1] = s[1];
  }
};

}  // namespace fastrl::core
