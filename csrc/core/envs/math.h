// Elementary functions for the environment cores.
//
// double: the C library's functions, because gymnasium computes with numpy and Python's math,
// which on glibc give the same bits (measured: numpy's sin/cos equal math.sin/cos). numpy's scalar
// `x ** 2` calls pow(), which is not always x * x (about 1 in 1000 doubles differ in the last
// bit), so pow2() calls pow() too, with the exponent hidden from the compiler, which would
// otherwise rewrite pow(x, 2) as x * x.
// float: a branchless Cody-Waite + minimax sin/cos (Cephes' coefficients, about 1 ulp on the
// reduced range) that the compiler vectorizes; the float32 environments are for throughput and
// are tested against gymnasium to a tolerance.
#pragma once

#include <cmath>
#include <cstring>

#include "core/common.h"

namespace fastrl::core {

// float64 environments mirror gymnasium bit for bit; float32 ones are the fast path.
template <typename T>
constexpr bool kExact = sizeof(T) == sizeof(double);

FASTRL_HD float pow_(float x, float y) { return ::powf(x, y); }
FASTRL_HD double pow_(double x, double y) { return ::pow(x, y); }

template <typename F>
FASTRL_HD F pow2(F x) {
#if defined(__CUDA_ARCH__)
  return pow_(x, F(2));
#else
  volatile F two = F(2);
  return pow_(x, two);
#endif
}

FASTRL_HD float ceil_(float x) { return ::ceilf(x); }
FASTRL_HD double ceil_(double x) { return ::ceil(x); }

FASTRL_HD double sin_(double x) { return ::sin(x); }
FASTRL_HD double cos_(double x) { return ::cos(x); }

FASTRL_HD int32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(x);
#else
  int32_t i;
  std::memcpy(&i, &x, sizeof i);
  return i;
#endif
}

// sin and cos of x for |x| < 2^22 (plenty for angles that grow by at most a few hundred radians
// per episode). x = j * pi/2 + r with |r| <= pi/4, then the quadrant j picks and signs them.
// Any other x (an injected state, NaN) gives some value without undefined behaviour.
FASTRL_HD void sincos_fast(float x, float& s, float& c) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float shifted = x * 0.636619772367581343f + magic;
  const float j = shifted - magic;
  const float r = ((x - j * 1.5703125f) - j * 4.837512969970703125e-4f) - j * 7.54978995489188216e-8f;
  const float r2 = r * r;
  const float sr = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const float cr = 1.0f - 0.5f * r2 +
                   r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  // j & 3 from the low mantissa bits of j + 1.5 * 2^23 (equal for |j| <= 2^22): int(j) would
  // be undefined for |j| >= 2^31 or NaN.
  const int q = float_bits(shifted) & 3;
  const float s0 = (q & 1) ? cr : sr;
  const float c0 = (q & 1) ? sr : cr;
  s = (q & 2) ? -s0 : s0;
  c = ((q + 1) & 2) ? -c0 : c0;
}

FASTRL_HD float sin_(float x) {
  float s, c;
  sincos_fast(x, s, c);
  return s;
}
FASTRL_HD float cos_(float x) {
  float s, c;
  sincos_fast(x, s, c);
  return c;
}

}  // namespace fastrl::core
