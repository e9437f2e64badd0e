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
struct MountainCarContinuous : EnvDims<2, 2, 1>, ContinuousAction<T> {
  static constexpr const char* kId = "MountainCarContinuous-v0";
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

  FASTRL_HD static void step(const Params& p, T* s, T action, int32_t elapsed, T& reward,
                             bool& terminated) {
    if (!kExact<T>) return step_float32(p, s, action, reward, terminated);
    const float a = static_cast<float>(action);
    terminated = elapsed == 0 ? move<double>(p, s, a) : move<float>(p, s, a);
    // math.pow(action[0], 2) of the unclipped float32 action is exact in double.
    const double aa = static_cast<double>(a);
    reward = static_cast<T>((terminated ? 100.0 : 0.0) - aa * aa * 0.1);
  }

  // The float64 env's update of s, in the precision F of gymnasium's state: float64 right after
  // reset, float32 after (where Python float constants act as float32). Returns terminated.
  template <typename F>
  FASTRL_HD static bool move(const Params& p, T* s, float a) {
    const bool clipped = (a < -1.0f) | (a > 1.0f);
    const double bound = a < -1.0f ? -1.0 : 1.0;  // the Python float bound of a clipped action
    F position = static_cast<F>(s[0]), velocity = static_cast<F>(s[1]);
    const double c = 0.0025 * ::cos(static_cast<double>(F(3) * position));
    velocity += clipped ? static_cast<F>(bound * 0.0015 - c) : static_cast<F>(a * 0.0015f - static_cast<float>(c));
    if (velocity > F(0.07)) velocity = F(0.07);
    if (velocity < F(-0.07)) velocity = F(-0.07);
    position += velocity;
    if (position > F(0.6)) position = F(0.6);
    if (position < F(-1.2)) position = F(-1.2);
    if (position == F(-1.2) && velocity < 0) velocity = F(0);
    s[0] = static_cast<T>(static_cast<float>(position));
    s[1] = static_cast<T>(static_cast<float>(velocity));
    return position >= F(0.45) && velocity >= static_cast<F>(p.goal_velocity);
  }

  // The float32 env: every step in float32 with the vectorizable cosine (the fallback computes
  // the same way), within float32 rounding of gymnasium's mixed precisions.
  FASTRL_HD static void step_float32(const Params& p, T* s, T action, T& reward,
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
