// Backward recurrences of GAE and discounted returns, written once for CPU and CUDA.
//
// Both are first-order linear recurrences run backwards in time over each column j of a
// time-major [T, N] problem:
//     carry_t = d_t + c * (done_t ? 0 : carry_{t+1})
//   GAE:                d_t = r_t + gamma * (terminated_t ? 0 : next_value_t) - value_t,
//                       c = gamma * lam                         (carry = advantage)
//   discounted returns: d_t = r_t,  c = gamma                     (carry = return)
// A done step drops the carry rather than multiplying it by 0, like the reference's
// `torch.where(done, 0, carry)`: 0 * inf = NaN, so a non-finite value in one episode would
// otherwise reach every earlier episode of the column.
// A masked (padding) step leaves the carry unchanged and writes a zero advantage/return, so the
// last valid token of a sequence links to the next valid one.
//
// Because x -> d + c*x maps compose associatively, a long column can also be split into chunks:
// aggregate() folds a chunk into one map, an exclusive scan over chunks gives each chunk its
// incoming carry, and sweep() then replays the chunk. Kernels choose between a sequential sweep
// per column (many columns) and this chunked scan (few, long columns).
//
// Operation order mirrors fastrl/ops/returns.py (the PyTorch reference) term by term; with
// FP contraction disabled the sequential sweep is bit-identical to it.
#pragma once

#include <limits>

#include "core/common.h"

namespace fastrl::core {

// The map x -> d + c * (reset ? 0 : x): one step (reset = done), or several folded into one.
template <typename T>
struct Affine {
  T c;
  T d;
  bool reset;
};

template <typename T>
FASTRL_HD T apply(Affine<T> f, T x) {
  return f.d + f.c * (f.reset ? T(0) : x);
}

// `earlier` applied after `later`: the map from the carry entering `later` (from the future)
// to the carry leaving `earlier`. A reset in `earlier` ignores `later` entirely (never 0 * inf).
template <typename T>
FASTRL_HD Affine<T> compose(Affine<T> earlier, Affine<T> later) {
  if (earlier.reset) return earlier;
  T c = earlier.c * later.c;
  // A product of positive discounts that underflows to 0 would make 0 * inf = NaN of an
  // infinite carry, which the reference (one discount at a time) keeps infinite.
  if (c == T(0) && earlier.c != T(0) && later.c != T(0)) c = std::numeric_limits<T>::min();
  return {c, earlier.d + earlier.c * later.d, later.reset};
}

// kMasked: whether `mask` is read at all (a compile-time switch keeps the unmasked loop free of
// control flow, so it vectorizes).
template <typename T, bool kMasked>
struct GaeProblem {
  using scalar_t = T;
  View2D<const T> rewards, values, next_values;     // [T, N]
  View2D<const uint8_t> terminated, done, mask;     // [T, N] bool bytes (uint8 vectorizes)
  View2D<T> advantages, returns;                    // [T, N] outputs
  T gamma;
  T gamma_lam;  // gamma * lam, rounded once from double like the reference

  FASTRL_HD T initial_carry(int64_t) const { return T(0); }
  FASTRL_HD bool valid(int64_t t, int64_t j) const { return !kMasked || mask(t, j); }
  FASTRL_HD Affine<T> affine(int64_t t, int64_t j) const {
    const T next_value = next_values(t, j);  // loaded unconditionally: a select, not a branch
    const T bootstrap = terminated(t, j) ? T(0) : next_value;
    const T delta = rewards(t, j) + gamma * bootstrap - values(t, j);
    return {gamma_lam, delta, done(t, j) != 0};
  }
  FASTRL_HD void write(int64_t t, int64_t j, T advantage) const {
    advantages(t, j) = advantage;
    returns(t, j) = advantage + values(t, j);
  }
};

template <typename T, bool kMasked>
struct DiscountedReturnsProblem {
  using scalar_t = T;
  View2D<const T> rewards;                // [T, N]
  View2D<const uint8_t> done, mask;       // [T, N] bool bytes
  const T* bootstrap = nullptr;           // [N] value after the last step (contiguous)
  View2D<T> returns;                      // [T, N] output
  T gamma;

  FASTRL_HD T initial_carry(int64_t j) const { return bootstrap[j]; }
  FASTRL_HD bool valid(int64_t t, int64_t j) const { return !kMasked || mask(t, j); }
  FASTRL_HD Affine<T> affine(int64_t t, int64_t j) const {
    return {gamma, rewards(t, j), done(t, j) != 0};
  }
  FASTRL_HD void write(int64_t t, int64_t j, T ret) const { returns(t, j) = ret; }
};

// One step of the recurrence at (t, j): writes the outputs (0 where masked) and returns the new
// carry (unchanged where masked). Branch-free, so loops over j vectorize.
template <typename Problem, typename T>
FASTRL_HD T step(const Problem& p, int64_t t, int64_t j, T carry) {
  const bool valid = p.valid(t, j);
  const Affine<T> f = p.affine(t, j);
  const T out = apply(f, carry);
  p.write(t, j, valid ? out : T(0));
  return valid ? out : carry;
}

// Steps t = end-1 down to begin of column j starting from `carry`; returns the carry at `begin`.
template <typename Problem, typename T>
FASTRL_HD T sweep(const Problem& p, int64_t j, int64_t begin, int64_t end, T carry) {
  for (int64_t t = end - 1; t >= begin; --t) carry = step(p, t, j, carry);
  return carry;
}

// The steps [begin, end) of column j folded into one map (masked steps are the identity).
template <typename Problem, typename T = typename Problem::scalar_t>
FASTRL_HD Affine<T> aggregate(const Problem& p, int64_t j, int64_t begin, int64_t end) {
  Affine<T> acc{T(1), T(0), false};
  for (int64_t t = end - 1; t >= begin; --t) {
    if (p.valid(t, j)) acc = compose(p.affine(t, j), acc);
  }
  return acc;
}

}  // namespace fastrl::core
