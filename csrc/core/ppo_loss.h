// Per-row math of the fused PPO + KL loss and of token log-probs, written once for CPU and CUDA.
//
// A row is one token: logits z[0, V) (read in the accumulation type T), action a, temperature
// tau, s_i = z_i / tau. The softmax sums are kept relative to a running maximum m,
//     S = sum_i exp(s_i - m),     W = sum_i exp(s_i - m) (s_i - m),
// which one pass over the row builds (online softmax: on a new maximum both are rescaled), and
// which merge exactly across disjoint parts of a row (threads of a block, lanes of a loop):
//     lse = m + log S,   logp = s_a - lse,   H = -sum_i p_i log p_i = log S - W / S.
//
// Gradient of a per-token objective f(logp, H), with g = df/dlogp and h = df/dH: since
// dlogp/ds_i = 1[i=a] - p_i and dH/ds_i = -p_i (log p_i + H),
//     df/dz_i = ( g 1[i=a] - p_i (g + h (log p_i + H)) ) / tau.
// A second pass over the row recomputes p_i = exp(s_i - lse) from the saved lse and H, so no
// float32 copy of the softmax is ever stored.
//
// The PPO terms of one token (fastrl/ops/ppo_loss.py, ppo_loss_reference, is the spec):
//     ratio = exp(logp - old),  pg = max(-ratio A, -clip(ratio, 1 - clip_low, 1 + clip_high) A),
//     with a dual clip c > 1 for A < 0: pg = min(pg, -c A);
//     KL to the reference log-prob r: k1 = logp - r, k2 = (logp - r)^2 / 2,
//     k3 = exp(r - logp) - (r - logp) - 1;
//     loss = pg + kl_coef KL - entropy_coef H, and its derivative with respect to logp.
// Options: policy_loss "cispo" (MiniMax-M1) replaces pg by -sg(clip(ratio)) A logp; a token
// weight w multiplies pg; kl_ratio_weighted multiplies KL by the ratio (TRL's bias correction,
// gradient through the ratio too). Sequence-level importance (GSPO) passes the sequence's mean
// log-ratio in place of logp - old: the ratio is then sg(s_i) exp(logp - sg(logp)) per token
// (TRL's and verl's convention), whose derivative in the token's own logp is the ratio, as at
// the token level; so every per-token formula and its gradient stay local to the token.
#pragma once

#include <limits>
#include <math.h>

#include "core/common.h"

namespace fastrl::core {

FASTRL_HD float exp_(float x) { return expf(x); }
FASTRL_HD double exp_(double x) { return exp(x); }
FASTRL_HD float log_(float x) { return logf(x); }
FASTRL_HD double log_(double x) { return log(x); }

template <typename T>
struct SoftmaxSums {
  T max = -std::numeric_limits<T>::infinity();
  T sum = T(0);   // S
  T wsum = T(0);  // W

  // Re-expresses S and W relative to new_max >= max; empty sums (max = -inf) stay empty.
  FASTRL_HD void rebase(T new_max) {
    if (sum > T(0)) {
      const T shift = max - new_max;
      const T scale = exp_(shift);
      wsum = scale * (wsum + shift * sum);
      sum = scale * sum;
    }
    max = new_max;
  }

  // Adds one scaled logit s. exp(-inf) = 0 adds nothing; NaN propagates into S.
  FASTRL_HD void add(T s) {
    if (s == -std::numeric_limits<T>::infinity()) return;
    if (s > max) rebase(s);
    const T d = s - max;
    const T e = exp_(d);
    sum += e;
    wsum += e * d;
  }

  FASTRL_HD void merge(SoftmaxSums other) {
    const T m = other.max > max ? other.max : max;
    rebase(m);
    other.rebase(m);
    sum += other.sum;
    wsum += other.wsum;
  }

  FASTRL_HD T lse() const { return max + log_(sum); }
  FASTRL_HD T entropy() const { return log_(sum) - wsum / sum; }
};

enum class KlEstimator : int { k1 = 1, k2 = 2, k3 = 3 };

template <typename T>
struct PpoParams {
  T ratio_low, ratio_high;  // 1 - clip_low, 1 + clip_high
  T dual_clip;              // <= 0: no dual clip
  T kl_coef, entropy_coef;
  KlEstimator kl_estimator;
  bool cispo = false;              // policy_loss "cispo" (else "ppo")
  bool kl_ratio_weighted = false;  // KL term times the ratio
};

template <typename T>
struct PpoTerms {
  T loss, ratio, kl, clipped;  // clipped: 1 where a clip set pg (its gradient is then 0)
  T dloss_dlogp;
};

// has_ref = false: no reference policy, KL = 0. log_ratio: logp - old at the token level, the
// sequence's mean log-ratio at the sequence level; weight: the token's weight on pg.
template <typename T>
FASTRL_HD PpoTerms<T> ppo_terms(const PpoParams<T>& p, T logp, T entropy, T log_ratio, T advantage,
                                T weight, bool has_ref, T ref_logp) {
  PpoTerms<T> out;
  out.ratio = exp_(log_ratio);
  const T r = out.ratio;
  const T clamped = r < p.ratio_low ? p.ratio_low : (r > p.ratio_high ? p.ratio_high : r);
  T pg, dpg;
  bool clipped = false;
  if (p.cispo) {
    // The clipped ratio is a constant weight: the gradient flows through logp alone, clipped
    // or not (pg is not the PPO surrogate's value).
    pg = -clamped * advantage * logp;
    dpg = -clamped * advantage;
    clipped = clamped != r;
  } else {
    const T unclipped_loss = -r * advantage;
    const T clipped_loss = -clamped * advantage;
    // The clipped branch wins only where clamp() is active, i.e. where it is constant in logp.
    pg = unclipped_loss;
    dpg = unclipped_loss;  // d(-r A)/dlogp = -r A
    if (clipped_loss > unclipped_loss) {
      pg = clipped_loss;
      dpg = T(0);
      clipped = true;
    }
    if (p.dual_clip > T(0) && advantage < T(0)) {
      const T bound = -p.dual_clip * advantage;
      if (bound < pg) {
        pg = bound;
        dpg = T(0);
        clipped = true;
      }
    }
  }
  pg = pg * weight;
  dpg = dpg * weight;
  out.clipped = clipped ? T(1) : T(0);

  T kl = T(0), dkl = T(0);
  if (has_ref) {
    const T d = logp - ref_logp;
    switch (p.kl_estimator) {
      case KlEstimator::k1:
        kl = d;
        dkl = T(1);
        break;
      case KlEstimator::k2:
        kl = T(0.5) * d * d;
        dkl = d;
        break;
      case KlEstimator::k3: {
        const T x = ref_logp - logp;
        const T ex = exp_(x);
        kl = ex - x - T(1);
        dkl = T(1) - ex;
        break;
      }
    }
  }
  if (has_ref && p.kl_ratio_weighted) {  // d(KL r)/dlogp = dKL r + KL r (dr/dlogp = r)
    dkl = dkl * r + kl * r;
    kl = kl * r;
  }
  out.kl = kl;
  // The KL term counts only when kl_coef != 0: k3's exp(ref - logp) overflows to inf in float32
  // far from the reference, and 0 * inf would make the loss NaN.
  const bool with_kl = p.kl_coef != T(0);
  out.loss = pg + (with_kl ? p.kl_coef * kl : T(0)) - p.entropy_coef * entropy;
  out.dloss_dlogp = dpg + (with_kl ? p.kl_coef * dkl : T(0));
  return out;
}

// d f / d z_i for one logit (see the top of the file); s = z_i / tau.
template <typename T>
FASTRL_HD T logit_grad(T s, bool is_action, T lse, T entropy, T g_logp, T g_entropy, T inv_temp) {
  const T logp_i = s - lse;
  const T p = exp_(logp_i);
  T g = p == T(0) ? T(0) : -p * (g_logp + g_entropy * (logp_i + entropy));  // 0 * -inf guard
  if (is_action) g += g_logp;
  return g * inv_temp;
}

// The logits of N rows, [N, V] with any strides, read as T and scaled by 1 / tau.
template <typename scalar_t, typename T>
struct LogitRows {
  using Acc = T;  // the accumulation type (float, or double for double logits)
  const scalar_t* data = nullptr;
  int64_t num_rows = 0, vocab = 0, row_stride = 0, col_stride = 0;
  const int64_t* actions = nullptr;  // [N]
  const bool* mask = nullptr;        // [N]; nullptr: every row is valid
  T inv_temp = T(1);

  FASTRL_HD bool active(int64_t r) const { return mask == nullptr || mask[r]; }
  FASTRL_HD bool valid_action(int64_t r) const { return actions[r] >= 0 && actions[r] < vocab; }
  FASTRL_HD const scalar_t* row(int64_t r) const { return data + r * row_stride; }
  FASTRL_HD T scale(scalar_t z) const { return static_cast<T>(z) * inv_temp; }
  FASTRL_HD T scaled(int64_t r, int64_t i) const { return scale(row(r)[i * col_stride]); }
};

// What the forward kernels write for row r once its softmax sums are known. Outputs are
// contiguous [N]; the PPO part is skipped when ppo_loss == nullptr (token_logprobs).
// The kernels' row-reduction interface, which another per-row op can implement with its own
// struct: `rows` (its LogitRows), write(r, sums) for an active row with a valid action, and
// fill(r, value) for a masked row (0) or, on the GPU, an out-of-range action (NaN).
template <typename scalar_t, typename T>
struct RowProblem {
  LogitRows<scalar_t, T> rows;
  T *logp = nullptr, *entropy = nullptr, *lse = nullptr;
  // PPO inputs ([N]; ref_logp nullptr: no reference) and outputs ([N]).
  const T *old_logp = nullptr, *advantage = nullptr, *ref_logp = nullptr;
  const T* weight = nullptr;  // [N]; nullptr: every token weighs 1
  // Sequence-level importance: [N], each token's sequence mean log-ratio, set between the row
  // pass (which then skips the terms) and write_terms(); nullptr: token level.
  const T* seq_log_ratio = nullptr;
  bool terms_later = false;
  T *loss = nullptr, *dloss_dlogp = nullptr, *ratio = nullptr, *kl = nullptr, *clipped = nullptr;
  PpoParams<T> params{};

  FASTRL_HD void write(int64_t r, const SoftmaxSums<T>& sums) const {
    const T row_lse = sums.lse();
    const T row_logp = rows.scaled(r, rows.actions[r]) - row_lse;
    const T row_entropy = sums.entropy();
    logp[r] = row_logp;
    entropy[r] = row_entropy;
    lse[r] = row_lse;
    if (loss == nullptr || terms_later) return;
    write_terms(r);
  }

  // The PPO outputs of an active row with a valid action, from its logp and entropy.
  FASTRL_HD void write_terms(int64_t r) const {
    const T row_logp = logp[r];
    const bool has_ref = ref_logp != nullptr;
    const T log_ratio = seq_log_ratio != nullptr ? seq_log_ratio[r] : row_logp - old_logp[r];
    const PpoTerms<T> t = ppo_terms(params, row_logp, entropy[r], log_ratio, advantage[r],
                                    weight != nullptr ? weight[r] : T(1), has_ref,
                                    has_ref ? ref_logp[r] : T(0));
    loss[r] = t.loss;
    dloss_dlogp[r] = t.dloss_dlogp;
    ratio[r] = t.ratio;
    kl[r] = t.kl;
    clipped[r] = t.clipped;
  }

  // Masked rows: every output 0; an out-of-range action (CUDA, which cannot raise): NaN.
  FASTRL_HD void fill(int64_t r, T value) const {
    logp[r] = entropy[r] = lse[r] = value;
    if (loss != nullptr) loss[r] = dloss_dlogp[r] = ratio[r] = kl[r] = clipped[r] = value;
  }
};

// The backward pass: grad[r, i] = d f / d z[r, i] for upstream g_logp = df/dlogp and
// g_entropy = df/dH per row. grad is contiguous [N, V] in the logits dtype.
template <typename scalar_t, typename T>
struct GradProblem {
  LogitRows<scalar_t, T> rows;
  const T *lse = nullptr, *entropy = nullptr, *g_logp = nullptr, *g_entropy = nullptr;  // [N]
  scalar_t* grad = nullptr;

  // Masked rows and rows without upstream gradient get zeros without reading their logits.
  FASTRL_HD bool zero(int64_t r) const {
    return !rows.active(r) || (g_logp[r] == T(0) && g_entropy[r] == T(0));
  }
  FASTRL_HD scalar_t* grad_row(int64_t r) const { return grad + r * rows.vocab; }
  // The gradient of logit i of row r, whose scaled value is s.
  FASTRL_HD scalar_t grad_at(int64_t r, int64_t i, T s) const {
    return static_cast<scalar_t>(logit_grad(s, i == rows.actions[r], lse[r], entropy[r],
                                            g_logp[r], g_entropy[r], rows.inv_temp));
  }
};

}  // namespace fastrl::core
