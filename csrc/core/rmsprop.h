// Centred RMSProp (Graves 2013, eqs. 38-40), the update of torch.optim.RMSprop(centered=True)
// without momentum or weight decay: the MinAtar paper's DQN optimizer. One element:
//   square_avg = alpha * square_avg + (1 - alpha) * g^2
//   grad_avg   = alpha * grad_avg + (1 - alpha) * g
//   param     -= lr * g / (sqrt(square_avg - grad_avg^2) + eps)
// in the operations and roundings of torch's vectorized CPU kernels (mul_, addcmul_, lerp_,
// addcmul, sqrt_, add_, addcdiv_ in torch/optim/rmsprop.py), so the result is bit-identical:
// addcmul and lerp round once (ATen's vector code is a fused multiply-add), addcdiv twice.
#pragma once

#include <cmath>

#include "core/common.h"

namespace fastrl::core {

template <typename T>
struct RMSpropHypers {
  T alpha, one_minus_alpha, eps, neg_lr;  // each rounded from a double, as torch's scalars are

  static RMSpropHypers from(double lr, double alpha, double eps) {
    return {static_cast<T>(alpha), static_cast<T>(1.0 - alpha), static_cast<T>(eps), static_cast<T>(-lr)};
  }
};

// a * b + c rounded once, and the correctly rounded square root, on host and device.
FASTRL_HD float fused_multiply_add(float a, float b, float c) { return fmaf(a, b, c); }
FASTRL_HD double fused_multiply_add(double a, double b, double c) { return fma(a, b, c); }
FASTRL_HD float square_root(float x) { return sqrtf(x); }
FASTRL_HD double square_root(double x) { return sqrt(x); }

// torch.lerp(start, end, w) as ATen's vectorized lerp_vec computes it (ATen/native/Lerp.h).
template <typename T>
FASTRL_HD T lerp(T start, T end, T w) {
  const T diff = end - start;
  return (w < T(0.5) && w > T(-0.5)) ? fused_multiply_add(w, diff, start) : fused_multiply_add(w - T(1), diff, end);
}

template <typename T>
FASTRL_HD void rmsprop_centered(T& param, T grad, T& square_avg, T& grad_avg, const RMSpropHypers<T>& h) {
  square_avg = fused_multiply_add(h.one_minus_alpha * grad, grad, square_avg * h.alpha);  // mul_, addcmul_
  grad_avg = lerp(grad_avg, grad, h.one_minus_alpha);                                     // lerp_
  const T avg = square_root(fused_multiply_add(-grad_avg, grad_avg, square_avg)) + h.eps;    // addcmul, sqrt_, add_
  param = param + h.neg_lr * grad / avg;                                                  // addcdiv_
}

}  // namespace fastrl::core
