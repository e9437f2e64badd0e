// AVX2 + FMA row passes of the fused PPO loss (declared in ppo_loss_avx2.h). This file alone is
// compiled with -mavx2 -mfma and ATen's AVX2 vectors (CPU_CAPABILITY=AVX2, the way ATen builds
// its own kernels); it includes only the vector and core headers, and everything it defines
// beyond the entry points has internal linkage.
//
// Forward, per row (contiguous, at most 1 MB at V = 256k, so the second read hits the cache):
// m = max_i s_i, then S = sum exp(s_i - m) and W = sum exp(s_i - m)(s_i - m) as in
// core::SoftmaxSums, in 4 x 8 float lanes summed apart over blocks of kBlock logits and then
// added to running totals (the same two-level summation as the scalar pass). Backward: the
// formula of core::logit_grad on 8 logits at a time; the action's logit and the tail of the
// row (< 32 logits) go through core itself.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu/ppo_loss_avx2.h"

#if !defined(CPU_CAPABILITY_AVX2)
#error "ppo_loss_avx2.cpp must be compiled with CPU_CAPABILITY_AVX2 (see CMakeLists.txt)"
#endif

namespace fastrl::cpu::avx2 {
namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kWidth = Vec::size();          // 8
constexpr int64_t kUnroll = 4;                   // independent accumulators per loop
constexpr int64_t kStep = kWidth * kUnroll;      // 32 logits per iteration
constexpr int64_t kBlock = 1024;                 // logits per lane between merges (multiple of kStep)
// Differences below this give exp() = 0 in float32 (ln FLT_MIN = -87.3); clamping to it keeps
// 0 * (-inf) out of W and of the gradient where a logit is -inf.
constexpr float kMinExponent = -128.0f;

template <typename scalar_t>
inline Vec load_floats(const scalar_t* x) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return Vec::loadu(x);
  } else {
    float buf[kWidth];
    for (int64_t k = 0; k < kWidth; ++k) buf[k] = static_cast<float>(x[k]);
    return Vec::loadu(buf);
  }
}

template <typename scalar_t>
inline void store_floats(const Vec& v, scalar_t* out) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    v.store(out);
  } else {
    float buf[kWidth];
    v.store(buf);
    for (int64_t k = 0; k < kWidth; ++k) out[k] = static_cast<scalar_t>(buf[k]);
  }
}

inline float sum_lanes(const Vec& v) {
  float buf[kWidth];
  v.store(buf);
  float s = 0.0f;
  for (int64_t k = 0; k < kWidth; ++k) s += buf[k];
  return s;
}

// max_i z_i (raw logits; NaN if any is NaN).
template <typename scalar_t>
float row_max(const scalar_t* z, int64_t V) {
  const int64_t vec_end = V - V % kStep;
  float m = -std::numeric_limits<float>::infinity();
  if (vec_end > 0) {
    Vec acc[kUnroll];
    for (int64_t k = 0; k < kUnroll; ++k) acc[k] = Vec(m);
    for (int64_t i = 0; i < vec_end; i += kStep) {
      for (int64_t k = 0; k < kUnroll; ++k)
        acc[k] = at::vec::maximum(acc[k], load_floats(z + i + k * kWidth));  // propagates NaN
    }
    const Vec all = at::vec::maximum(at::vec::maximum(acc[0], acc[1]),
                                     at::vec::maximum(acc[2], acc[3]));
    float buf[kWidth];
    all.store(buf);
    for (int64_t k = 0; k < kWidth; ++k) m = std::isnan(buf[k]) || buf[k] > m ? buf[k] : m;
    if (std::isnan(m)) return m;
  }
  for (int64_t i = vec_end; i < V; ++i) {
    const float x = static_cast<float>(z[i]);
    if (std::isnan(x)) return x;
    m = x > m ? x : m;
  }
  return m;
}

}  // namespace

template <typename scalar_t>
core::SoftmaxSums<float> row_sums(const core::LogitRows<scalar_t, float>& rows, int64_t r) {
  const int64_t V = rows.vocab;
  const scalar_t* z = rows.row(r);
  // s_i = z_i / tau with tau > 0, so max_i s_i = (max_i z_i) / tau exactly.
  const float max = rows.scale(static_cast<scalar_t>(row_max(z, V)));
  core::SoftmaxSums<float> out;
  if (!std::isfinite(max)) {  // NaN, +inf, or a row of -inf: the scalar definition decides
    for (int64_t i = 0; i < V; ++i) out.add(rows.scaled(r, i));
    return out;
  }
  const Vec inv_temp(rows.inv_temp), vmax(max), floor(kMinExponent), zero(0.0f);
  const int64_t vec_end = V - V % kStep;
  Vec sum_total = zero, wsum_total = zero;
  for (int64_t begin = 0; begin < vec_end; begin += kBlock) {
    const int64_t end = std::min(vec_end, begin + kBlock);
    Vec sum[kUnroll], wsum[kUnroll];
    for (int64_t k = 0; k < kUnroll; ++k) sum[k] = wsum[k] = zero;
    for (int64_t i = begin; i < end; i += kStep) {
      for (int64_t k = 0; k < kUnroll; ++k) {
        const Vec d = at::vec::maximum(load_floats(z + i + k * kWidth) * inv_temp - vmax, floor);
        const Vec e = d.exp_u20();
        sum[k] = sum[k] + e;
        wsum[k] = wsum[k] + e * d;
      }
    }
    sum_total = sum_total + ((sum[0] + sum[1]) + (sum[2] + sum[3]));
    wsum_total = wsum_total + ((wsum[0] + wsum[1]) + (wsum[2] + wsum[3]));
  }
  float sum = sum_lanes(sum_total), wsum = sum_lanes(wsum_total);
  for (int64_t i = vec_end; i < V; ++i) {  // the tail, as core::SoftmaxSums::add at this max
    const float s = rows.scaled(r, i);
    if (s == -std::numeric_limits<float>::infinity()) continue;
    const float d = s - max;
    const float e = core::exp_(d);
    sum += e;
    wsum += e * d;
  }
  out.max = max;
  out.sum = sum;
  out.wsum = wsum;
  return out;
}

template <typename scalar_t>
void grad_row(const core::GradProblem<scalar_t, float>& p, int64_t r) {
  const auto& rows = p.rows;
  const int64_t V = rows.vocab;
  const scalar_t* z = rows.row(r);
  scalar_t* grad = p.grad_row(r);
  const float lse = p.lse[r];
  const int64_t vec_end = std::isfinite(lse) ? V - V % kStep : 0;
  // core::logit_grad: logp_i = s_i - lse, p_i = exp(logp_i),
  // grad_i = -p_i (g_logp + g_entropy (logp_i + H)) / tau  (+ g_logp / tau at the action).
  const Vec inv_temp(rows.inv_temp), vlse(lse), floor(kMinExponent), zero(0.0f);
  const Vec g_logp(p.g_logp[r]), g_entropy(p.g_entropy[r]), entropy(p.entropy[r]);
  for (int64_t i = 0; i < vec_end; i += kStep) {
    for (int64_t k = 0; k < kUnroll; ++k) {
      const int64_t j = i + k * kWidth;
      const Vec logp = at::vec::maximum(load_floats(z + j) * inv_temp - vlse, floor);
      const Vec prob = logp.exp_u20();
      store_floats((zero - prob * (g_logp + g_entropy * (logp + entropy))) * inv_temp, grad + j);
    }
  }
  for (int64_t i = vec_end; i < V; ++i) grad[i] = p.grad_at(r, i, rows.scaled(r, i));
  const int64_t a = rows.actions[r];
  grad[a] = p.grad_at(r, a, rows.scaled(r, a));
}

#define FASTRL_INSTANTIATE(scalar_t)                                                         \
  template core::SoftmaxSums<float> row_sums(const core::LogitRows<scalar_t, float>&, int64_t); \
  template void grad_row(const core::GradProblem<scalar_t, float>&, int64_t);
FASTRL_INSTANTIATE(float)
FASTRL_INSTANTIATE(c10::Half)
FASTRL_INSTANTIATE(c10::BFloat16)
#undef FASTRL_INSTANTIATE

}  // namespace fastrl::cpu::avx2
