// Pendulum-v1, mirroring gymnasium/envs/classic_control/pendulum.py (gymnasium 1.4).
// State [theta, theta_dot]; observation [cos(theta), sin(theta), theta_dot]; one torque action
// clipped to [-2, 2]. gymnasium's action is float32, so the terms with u are float32 arithmetic
// there (numpy's weak Python scalars), and they are here too.
#pragma once

#include <algorithm>

#include "core/envs/env.h"
#include "core/envs/math.h"
#include "core/rng.h"

namespace fastrl::core {

// numpy's float64 remainder: the sign of the divisor, like Python's %.
FASTRL_HD double remainder_like_numpy(double a, double b) {
  double mod = fmod(a, b);
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) mod += b;
  } else {
    mod = copysign(0.0, b);
  }
  return mod;
}

// The float32 fast path: a - b * floor(a / b), with floor from a truncating conversion so the
// loop vectorizes. The conversion is defined for |a / b| < 2^31 only, so it gets the quotient
// clamped to +-2^23 (NaN to -2^23), and what the clamp took off is added back: 0 below 2^23,
// where the result is exact, while beyond it every float is whole anyway (NaN stays NaN).
// Written so that GCC 12 still vectorizes the loop (checked with -fopt-info-vec): std::min/max
// with literal bounds, no select on the result.
FASTRL_HD float remainder_like_numpy(float a, float b) {
  const float q = a / b;
  const float clamped = std::min(8388608.0f, std::max(-8388608.0f, q));
  const float t = static_cast<float>(static_cast<int32_t>(clamped));
  return a - b * ((t > clamped ? t - 1.0f : t) + (q - clamped));
}

template <typename T>
struct Pendulum : EnvDims<2, 3, 2>, ContinuousAction<T> {
  static constexpr const char* kId = "Pendulum-v1";
  static constexpr std::array kParams{real_param("g", 10.0)};
  struct Params {
    T g;  // gravity
  };
  static Params params(const double* p) { return {static_cast<T>(p[0])}; }

  template <typename Rng>  // ResetStream, or the CPU kernel's precomputed words
  FASTRL_HD static void reset(const Params&, Rng& rng, T* s) {
    const double pi = 3.141592653589793;
    s[0] = static_cast<T>(rng.uniform(-pi, pi));
    s[1] = static_cast<T>(rng.uniform(-1.0, 1.0));
  }

  FASTRL_HD static void step(const Params& p, T* s, T action, int32_t, T& reward,
                             bool& terminated) {
    const T pi = T(3.141592653589793), dt = T(0.05), max_speed = T(8);
    const T th = s[0], thdot = s[1];
    float u = static_cast<float>(action);
    u = u < -2.0f ? -2.0f : (u > 2.0f ? 2.0f : u);
    const T an = remainder_like_numpy(th + pi, T(2) * pi) - pi;  // angle_normalize
    const T an2 = kExact<T> ? pow2(an) : an * an;
    const T thdot2 = kExact<T> ? pow2(thdot) : thdot * thdot;
    const float u2 = kExact<T> ? pow2(u) : u * u;
    const T costs = an2 + T(0.1) * thdot2 + static_cast<T>(0.001f * u2);
    // 3 * g / (2 * l) with l = 1; 3.0 / (m * l ** 2) = 3.0 with m = l = 1.
    T newthdot = thdot + (T(3) * p.g / T(2) * sin_(th) + static_cast<T>(3.0f * u)) * dt;
    newthdot = newthdot < -max_speed ? -max_speed : (newthdot > max_speed ? max_speed : newthdot);
    s[0] = th + newthdot * dt;
    s[1] = newthdot;
    reward = -costs;
    terminated = false;
  }

  FASTRL_HD static void observe(const Params&, const T* s, T* obs) {
    obs[0] = cos_(s[0]);
    obs[1] = sin_(s[0]);
    obs[2] = s[1];
  }
};

}  // namespace fastrl::core
