// The CPU step of a range of MinAtar envs, torch-free (csrc/cpu/envs.cpp splits the batch over
// threads). A game's frame is branchy integer code on one env's state row, so envs are stepped
// one by one; what is done for many envs at once is what vectorizes. In chunks of kMinAtarChunk
// envs:
//   1. one memset zeroes the chunk's observations (and final observations): a few large stores
//      instead of a short `rep stos` per env, and the lines stay in cache for the draws;
//   2. a vectorized loop computes the first Philox block of every env's step stream (its sticky
//      draw and the game's first draw): ten rounds of two 32 x 32 -> 64-bit products that would
//      otherwise run one env at a time (explicit AVX2 in the AVX2 build, cpu/philox_avx2.h);
//   3. a scalar loop steps the envs (core::minatar::step_env) from those words, prefetching the
//      state of the envs just ahead where rows are long (Seaquest).
// The draws are the same numbers, in the same order, as core::minatar::StepStream's (the CUDA
// kernel's), so every backend produces identical trajectories.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/minatar/batch.h"
#include "cpu/philox_avx2.h"

namespace fastrl::cpu {

// 64 envs: up to 64 KB of observations (Seaquest's 1000 bytes each), which stay in L2.
constexpr int64_t kMinAtarChunk = 64;

// The words of block 0 of the step streams of envs [lo, lo + m), word-major: w[word][i]:
// core::philox4x32_10 on the counter (2^31, elapsed, resets, env) under the key seed.
template <typename Game, typename T>
inline void step_first_blocks(const core::minatar::MinAtarBatch<Game, T>& b, int64_t lo, int m,
                              uint32_t (&w)[4][kMinAtarChunk]) {
  static_assert(kMinAtarChunk % 8 == 0, "whole vectors");
  alignas(32) uint32_t k0[kMinAtarChunk], k1[kMinAtarChunk], c1[kMinAtarChunk],
      c2[kMinAtarChunk], c3[kMinAtarChunk];
  const uint32_t env0 = static_cast<uint32_t>(b.first_env + lo);
  // Whole vectors of 8: the lanes past m compute words nobody reads, from defined inputs.
  const int padded = (m + 7) / 8 * 8;
#pragma omp simd
  for (int i = 0; i < padded; ++i) {
    const bool live = i < m;
    const uint64_t seed = live ? static_cast<uint64_t>(b.seeds[lo + i]) : 0;
    k0[i] = static_cast<uint32_t>(seed);
    k1[i] = static_cast<uint32_t>(seed >> 32);
    c1[i] = live ? static_cast<uint32_t>(b.elapsed[lo + i]) : 0;
    c2[i] = live ? static_cast<uint32_t>(b.resets[lo + i]) : 0;
    c3[i] = env0 + static_cast<uint32_t>(i);
  }
#if defined(__AVX2__)
  for (int i = 0; i < m; i += 8) {
    __m256i x0 = _mm256_set1_epi32(static_cast<int>(0x80000000u)), x1 = load8(c1 + i);
    __m256i x2 = load8(c2 + i), x3 = load8(c3 + i);
    philox4x32_10_x8(x0, x1, x2, x3, load8(k0 + i), load8(k1 + i));
    store8(w[0] + i, x0);
    store8(w[1] + i, x1);
    store8(w[2] + i, x2);
    store8(w[3] + i, x3);
  }
#else
  // On scalar words: GCC vectorizes the rounds there, not through the Philox4x32 struct.
#pragma omp simd
  for (int i = 0; i < m; ++i) {
    uint32_t x0 = 0x80000000u, x1 = c1[i], x2 = c2[i], x3 = c3[i];
    core::philox4x32_10_words(x0, x1, x2, x3, k0[i], k1[i]);
    w[0][i] = x0;
    w[1][i] = x1;
    w[2][i] = x2;
    w[3][i] = x3;
  }
#endif
}

// Rows longer than kPrefetchRow bytes (Seaquest's, 3.2 KB) have the starts of their fields
// prefetched kPrefetchAhead envs ahead: a step reads the start of each list, lines far apart
// that the hardware prefetcher does not guess, and 4096 such rows do not fit in L2 (1.25x faster
// at 4096 envs; shorter rows gain nothing).
constexpr int kPrefetchAhead = 2;
constexpr int kPrefetchRow = 2048;

// The state-row offsets (int32) at which the game's fields start (column 0 is the last action),
// but at least 8 apart (one prefetch covers neighbours): what a step reads first.
template <typename Game>
struct FieldStarts {
  int offset[Game::kFields.size() + 1] = {};
  int count = 0;
  constexpr FieldStarts() {
    int start = 1;
    offset[count++] = 0;
    for (const core::minatar::StateField& f : Game::kFields) {
      if (start >= offset[count - 1] + 8) offset[count++] = start;
      start += f.count;
    }
  }
};

// One step of envs [begin, end) of b (actions checked by the caller).
template <typename Game, typename T>
void minatar_step_range(const core::minatar::MinAtarBatch<Game, T>& b, int64_t begin, int64_t end) {
  constexpr int64_t kObs = core::minatar::MinAtarBatch<Game, T>::kObs;
  constexpr int kRow = core::minatar::MinAtarBatch<Game, T>::kRow;
  constexpr FieldStarts<Game> kStarts{};
  for (int64_t lo = begin; lo < end; lo += kMinAtarChunk) {
    const int m = static_cast<int>(std::min(end, lo + kMinAtarChunk) - lo);
    std::memset(b.obs + lo * kObs, 0, static_cast<size_t>(m * kObs));
    if (b.same_step) std::memset(b.final_obs + lo * kObs, 0, static_cast<size_t>(m * kObs));
    uint32_t w[4][kMinAtarChunk];
    step_first_blocks(b, lo, m, w);
    for (int i = 0; i < m; ++i) {
      const int64_t j = lo + i;
      if (kRow * 4 > kPrefetchRow && j + kPrefetchAhead < end) {
        const int32_t* row = b.state + (j + kPrefetchAhead) * kRow;
        for (int k = 0; k < kStarts.count; ++k) __builtin_prefetch(row + kStarts.offset[k], 1);
      }
      core::minatar::StepStream rng(b.seeds[j], b.first_env + j, b.resets[j], b.elapsed[j],
                                          {{w[0][i], w[1][i], w[2][i], w[3][i]}});
      core::minatar::step_env(b, j, rng);
    }
  }
}

}  // namespace fastrl::cpu
