// The CPU step of a range of envs, torch-free (csrc/cpu/envs.cpp splits the batch over threads).
//
// Envs go in chunks of kChunk. In each chunk:
//   1. a branch-free loop runs core::advance for every env; GCC vectorizes it over the SoA state
//      (flags are uint8_t, no 64-bit compares, no loop-invariant bools: see the env headers);
//   2. the envs that must reset (about 1 in 20 for CartPole with random actions) are listed from
//      64-bit masks of their flags;
//   3. a vectorized loop computes the Philox words of all those resets at once (SoA; explicit
//      AVX2 in the AVX2 build), and
//   4. a scalar loop resets them (core::autoreset_with) from those words.
// The draws are the same numbers, in the same order, as core::ResetStream's (the CUDA kernel's),
// so every backend produces identical trajectories.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/envs/batch.h"
#include "cpu/philox_avx2.h"

namespace fastrl::cpu {

constexpr int64_t kChunk = 512;
// Batches of more envs than this are split over torch's threads (csrc/cpu/envs.cpp says why).
constexpr int64_t kThreadGrain = 16384;

// The first kWords words of the reset streams of a list of envs, word-major: w[word][i].
template <int kWords>
struct ResetWords {
  uint32_t w[kWords][kChunk];
};

// The ResetStream interface on precomputed words (the i-th env of a ResetWords).
template <int kWords>
struct WordStream {
  const ResetWords<kWords>* words;
  int i;
  int used = 0;

  double next_double() {
    const double u = core::words_to_double(words->w[used][i], words->w[used + 1][i]);
    used += 2;
    return u;
  }
  double uniform(double low, double high) { return core::uniform_from(next_double(), low, high); }
};

// Philox words of the next reset of envs idx[0..k): exactly core::ResetStream's.
template <int kWords>
inline void reset_words(const int64_t* seeds, const int64_t* resets, int64_t first_env,
                        const int32_t* idx, int k, ResetWords<kWords>& out) {
  static_assert(kWords % 4 == 0, "whole Philox blocks");
  static_assert(kChunk % 8 == 0, "whole vectors");
  alignas(32) uint32_t k0[kChunk], k1[kChunk], r0[kChunk], r1[kChunk], env[kChunk];
  for (int i = 0; i < k; ++i) {
    const int32_t j = idx[i];
    const uint64_t seed = static_cast<uint64_t>(seeds[j]), r = static_cast<uint64_t>(resets[j]);
    k0[i] = static_cast<uint32_t>(seed);
    k1[i] = static_cast<uint32_t>(seed >> 32);
    r0[i] = static_cast<uint32_t>(r);
    r1[i] = static_cast<uint32_t>(r >> 32);
    env[i] = static_cast<uint32_t>(first_env + j);  // the env's global index
  }
  // Whole vectors of 8: the lanes past k compute words nobody reads, from defined inputs.
  for (int i = k; i < (k + 7) / 8 * 8; ++i) k0[i] = k1[i] = r0[i] = r1[i] = env[i] = 0;
  for (int block = 0; block < kWords / 4; ++block) {
    uint32_t* w0 = out.w[4 * block];
    uint32_t* w1 = out.w[4 * block + 1];
    uint32_t* w2 = out.w[4 * block + 2];
    uint32_t* w3 = out.w[4 * block + 3];
#if defined(__AVX2__)
    for (int i = 0; i < k; i += 8) {
      __m256i c0 = _mm256_set1_epi32(block), c1 = load8(r0 + i), c2 = load8(r1 + i), c3 = load8(env + i);
      philox4x32_10_x8(c0, c1, c2, c3, load8(k0 + i), load8(k1 + i));
      store8(w0 + i, c0);
      store8(w1 + i, c1);
      store8(w2 + i, c2);
      store8(w3 + i, c3);
    }
#else
    // core::philox4x32_10 on scalar words (GCC vectorizes it there, not through the struct).
#pragma omp simd
    for (int i = 0; i < k; ++i) {
      uint32_t c0 = static_cast<uint32_t>(block), c1 = r0[i], c2 = r1[i], c3 = env[i];
      core::philox4x32_10_words(c0, c1, c2, c3, k0[i], k1[i]);
      w0[i] = c0;
      w1[i] = c1;
      w2[i] = c2;
      w3[i] = c3;
    }
#endif
  }
}

// Writes base + i for every pending[i] (0 or 1) set, i < m, to idx in order; returns how many.
// Resets are rare (about 1 env in 20 per step), so the flags are packed into 64-bit masks
// without branches and only the set bits are visited: one loop exit to mispredict per 64 envs.
inline int list_pending(uint8_t* pending, int m, int32_t base, int32_t* idx) {
  static_assert(kChunk % 64 == 0, "whole masks");
  std::memset(pending + m, 0, (m + 63) / 64 * 64 - m);
  int k = 0;
  for (int i = 0; i < m; i += 64) {
    uint64_t mask = 0;
    for (int byte = 0; byte < 8; ++byte) {
      uint64_t w;  // eight flags, one per byte
      std::memcpy(&w, pending + i + 8 * byte, 8);
      // Gathers bit 0 of every byte into the top byte (as bits 56..63), in order.
      mask |= ((w * 0x0102040810204080ull) >> 56) << (8 * byte);
    }
    for (; mask != 0; mask &= mask - 1) idx[k++] = base + i + __builtin_ctzll(mask);
  }
  return k;
}

// Whether every action is valid: discrete ones in [0, kNumActions) (compared as unsigned, so
// negative ones fail too), continuous ones not NaN. A pass of its own, before the step, which must
// not start on bad input: 0.4 us for 4096 int64 actions in the AVX2 build, 2.2 us in SSE2's.
template <typename Env, typename T>
bool actions_valid(const core::EnvBatch<Env, T>& b) {
  // Locals: through `b`, GCC loads each lane's action separately (a gather).
  const auto* action = b.action;
  const int64_t n = b.n;
  uint64_t bad = 0;
  if constexpr (std::is_integral<typename Env::Action>::value) {
    constexpr uint64_t k = static_cast<uint64_t>(Env::kNumActions);
#pragma omp simd reduction(| : bad)
    for (int64_t j = 0; j < n; ++j) bad |= static_cast<uint64_t>(action[j]) >= k;
  } else {
#pragma omp simd reduction(| : bad)
    for (int64_t j = 0; j < n; ++j) bad |= static_cast<uint64_t>(action[j] != action[j]);
  }
  return bad == 0;
}

// One step of envs [begin, end); envs index < 2^31 (the env index is a uint32 Philox word).
template <bool kSameStep, typename Env, typename T>
void step_range(const core::EnvBatch<Env, T>& batch, int64_t begin, int64_t end) {
  // A local copy: the loops store uint8_t, which may alias anything, so fields read through a
  // reference would have to be reloaded after every flag store (and the loop not vectorize).
  const core::EnvBatch<Env, T> b = batch;
  constexpr int kWords = 4 * ((Env::kResetDraws + 1) / 2);
  for (int64_t lo = begin; lo < end; lo += kChunk) {
    const int64_t hi = std::min(end, lo + kChunk);
    const int m = static_cast<int>(hi - lo);
    uint8_t pending[kChunk];
    // Each env reads and writes only its own elements, so iterations are independent.
#pragma omp simd
    for (int i = 0; i < m; ++i) pending[i] = core::advance<kSameStep>(b, lo + i);
    int32_t idx[kChunk];
    const int k = list_pending(pending, m, static_cast<int32_t>(lo), idx);
    if (k == 0) continue;
    ResetWords<kWords> words;
    reset_words(b.seeds, b.resets, b.first_env, idx, k, words);
    for (int i = 0; i < k; ++i) {
      WordStream<kWords> rng{&words, i};
      core::autoreset_with(b, idx[i], rng);
    }
  }
}

}  // namespace fastrl::cpu
