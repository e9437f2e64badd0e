// The AVX2 + FMA build of the fused centred RMSProp loop (cpu/rmsprop_kernel.h): eight floats
// (four doubles) an instruction with intrinsics, each one the operation core/rmsprop.h rounds
// (so the result is the baseline build's, bit for bit), the multiply-adds fused in hardware where
// the baseline build calls libm's software fma. The tail goes through the scalar core.
#include <immintrin.h>

#include <type_traits>

#include "cpu/rmsprop_kernel.h"

namespace fastrl::cpu::avx2 {
namespace {

struct Floats {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }    // a * b + c, one rounding
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // -(a * b) + c, one rounding
};

struct Doubles {
  using V = __m256d;
  static constexpr int kLanes = 4;
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_pd(a); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
};

template <typename T>
using Vec = std::conditional_t<std::is_same_v<T, float>, Floats, Doubles>;

}  // namespace

template <typename T>
void rmsprop_centered_range(T* param, const T* grad, T* square_avg, T* grad_avg, int64_t begin, int64_t end,
                            const core::RMSpropHypers<T>& h) {
  using O = Vec<T>;
  const auto alpha = O::set1(h.alpha), w = O::set1(h.one_minus_alpha), eps = O::set1(h.eps);
  const auto neg_lr = O::set1(h.neg_lr), w_minus_1 = O::set1(h.one_minus_alpha - T(1));
  const bool small_w = h.one_minus_alpha < T(0.5) && h.one_minus_alpha > T(-0.5);  // core::lerp's branch
  int64_t i = begin;
  for (; i + O::kLanes <= end; i += O::kLanes) {
    const auto g = O::load(grad + i);
    const auto sq = O::fmadd(O::mul(w, g), g, O::mul(O::load(square_avg + i), alpha));
    const auto ga_old = O::load(grad_avg + i);
    const auto diff = O::sub(g, ga_old);
    const auto ga = small_w ? O::fmadd(w, diff, ga_old) : O::fmadd(w_minus_1, diff, g);
    const auto avg = O::add(O::sqrt(O::fnmadd(ga, ga, sq)), eps);
    O::store(param + i, O::add(O::load(param + i), O::div(O::mul(neg_lr, g), avg)));
    O::store(square_avg + i, sq);
    O::store(grad_avg + i, ga);
  }
  cpu::rmsprop_centered_range(param, grad, square_avg, grad_avg, i, end, h);
}

template void rmsprop_centered_range<float>(float*, const float*, float*, float*, int64_t, int64_t,
                                            const core::RMSpropHypers<float>&);
template void rmsprop_centered_range<double>(double*, const double*, double*, double*, int64_t, int64_t,
                                             const core::RMSpropHypers<double>&);

}  // namespace fastrl::cpu::avx2
