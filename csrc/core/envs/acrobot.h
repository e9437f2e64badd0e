// Acrobot-v1, mirroring gymnasium/envs/classic_control/acrobot.py (gymnasium 1.4): the "book"
// dynamics integrated with one RK4 step of dt = 0.2 (its rk4() over t = [0, dt]), then wrap()
// of the angles into [-pi, pi] and bound() of the velocities, as there.
// State [theta1, theta2, dtheta1, dtheta2]; observation
// [cos(theta1), sin(theta1), cos(theta2), sin(theta2), dtheta1, dtheta2]; actions 0, 1, 2 apply
// torque -1, 0, +1; reward -1 per step and 0 on the terminating one.
#pragma once

#include "core/envs/env.h"
#include "core/envs/math.h"
#include "core/rng.h"

namespace fastrl::core {

template <typename T>
struct Acrobot : EnvDims<4, 6, 4>, DiscreteActions<3> {
  static constexpr const char* kId = "Acrobot-v1";
  static constexpr std::array<EnvParam, 0> kParams{};  // gymnasium's Acrobot takes none

  struct Params {};
  static Params params(const double*) { return {}; }

  // gymnasium draws the reset state as float32.
  template <typename Rng>  // ResetStream, or the CPU kernel's precomputed words
  FASTRL_HD static void reset(const Params&, Rng& rng, T* s) {
    for (int k = 0; k < 4; ++k) s[k] = static_cast<T>(static_cast<float>(rng.uniform(-0.1, 0.1)));
  }

  // _dsdt: d/dt of [theta1, theta2, dtheta1, dtheta2] under torque a. numpy's `x ** 2` on a
  // float64 scalar is pow() (pow2); on Python floats it is folded into the constants.
  FASTRL_HD static void dsdt(const T* s, T a, T* d) {
    const T m1 = T(1), m2 = T(1), l1 = T(1), lc1 = T(0.5), lc2 = T(0.5), I1 = T(1), I2 = T(1);
    const T g = T(9.8), pi = T(3.141592653589793);
    const T theta1 = s[0], theta2 = s[1], dtheta1 = s[2], dtheta2 = s[3];
    const T sq_dtheta1 = kExact<T> ? pow2(dtheta1) : dtheta1 * dtheta1;
    const T sq_dtheta2 = kExact<T> ? pow2(dtheta2) : dtheta2 * dtheta2;
    const T d1 = m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + T(2) * l1 * lc2 * cos_(theta2)) + I1 + I2;
    const T d2 = m2 * (lc2 * lc2 + l1 * lc2 * cos_(theta2)) + I2;
    const T phi2 = m2 * lc2 * g * cos_(theta1 + theta2 - pi / T(2));
    const T phi1 = -m2 * l1 * lc2 * sq_dtheta2 * sin_(theta2) -
                   T(2) * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin_(theta2) +
                   (m1 * lc1 + m2 * l1) * g * cos_(theta1 - pi / T(2)) + phi2;
    const T sq_d2 = kExact<T> ? pow2(d2) : d2 * d2;
    const T ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * sq_dtheta1 * sin_(theta2) - phi2) /
                       (m2 * (lc2 * lc2) + I2 - sq_d2 / d1);
    const T ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    d[0] = dtheta1;
    d[1] = dtheta2;
    d[2] = ddtheta1;
    d[3] = ddtheta2;
  }

  FASTRL_HD static T wrap(T x) {
    const T pi = T(3.141592653589793), diff = pi - -pi;
    if (kExact<T>) {  // gymnasium's loops, bit for bit
      // Past 1024 turns (only an injected state gets there) the loops would run for hours, or
      // forever at inf, as gymnasium's do: the whole turns come off first, exactly (fmod).
      const T far = T(1024) * diff;
      if (x > far || x < -far) x = static_cast<T>(fmod(static_cast<double>(x), double(diff)));
      while (x > pi) x = x - diff;
      while (x < -pi) x = x + diff;
      return x;
    }
    // float32: as many whole turns as the loops take, in one step, so the CPU loop vectorizes
    // (the loops would keep every env scalar: 10x slower).
    const T up = ceil_(x > pi ? (x - pi) / diff : T(0));
    const T down = ceil_(x < -pi ? (-pi - x) / diff : T(0));
    return x > pi ? x - up * diff : (x < -pi ? x + down * diff : x);
  }

  // Python's min(max(x, m), M).
  FASTRL_HD static T bound(T x, T m, T M) {
    const T y = m > x ? m : x;
    return M < y ? M : y;
  }

  FASTRL_HD static void step(const Params&, T* s, Action action, int32_t, T& reward,
                             bool& terminated) {
    const T dt = T(0.2), dt2 = dt / T(2), pi = T(3.141592653589793);
    // 0, 1, 2 -> -1, 0, +1; in T, so an unchecked action (validate=False on a GPU) cannot overflow.
    const T torque = static_cast<T>(static_cast<int32_t>(action)) - T(1);
    T k1[4], k2[4], k3[4], k4[4], y[4];
    dsdt(s, torque, k1);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + dt2 * k1[i];
    dsdt(y, torque, k2);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + dt2 * k2[i];
    dsdt(y, torque, k3);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + dt * k3[i];
    dsdt(y, torque, k4);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + dt / T(6) * (k1[i] + T(2) * k2[i] + T(2) * k3[i] + k4[i]);
    s[0] = wrap(y[0]);
    s[1] = wrap(y[1]);
    s[2] = bound(y[2], -(T(4) * pi), T(4) * pi);
    s[3] = bound(y[3], -(T(9) * pi), T(9) * pi);
    terminated = -cos_(s[0]) - cos_(s[1] + s[0]) > T(1);
    reward = terminated ? T(0) : T(-1);
  }

  FASTRL_HD static void observe(const Params&, const T* s, T* obs) {
    obs[0] = cos_(s[0]);
    obs[1] = sin_(s[0]);
    obs[2] = cos_(s[1]);
    obs[3] = sin_(s[1]);
    obs[4] = s[2];
    obs[5] = s[3];
  }
};

}  // namespace fastrl::core
