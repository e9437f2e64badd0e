// Philox4x32-10 on 8 counters at once, in AVX2 (core::philox4x32_10 on lanes: bit-identical).
// GCC's own vectorization of the scalar rounds (core::philox4x32_10_words in an `omp simd`
// loop) unpacks and repacks the 32 x 32 -> 64-bit products, twice the shuffles of this; the CPU
// kernels compiled for AVX2 (the *_avx2.cpp files) use it for their reset and step draws.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include "core/rng.h"

namespace fastrl::cpu {

// The (hi, lo) words of the 32 x 32 -> 64-bit products a * m of 8 lanes: even lanes in one
// multiply, odd lanes in another, blended back.
inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// Ten rounds on the counters (c0, c1, c2, c3) of 8 lanes, in place, under keys (key0, key1).
inline void philox4x32_10_x8(__m256i& c0, __m256i& c1, __m256i& c2, __m256i& c3, __m256i key0,
                             __m256i key1) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(core::kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(core::kPhiloxM1));
  const __m256i w0 = _mm256_set1_epi32(static_cast<int>(core::kPhiloxW0));
  const __m256i w1 = _mm256_set1_epi32(static_cast<int>(core::kPhiloxW1));
  for (int round = 0; round < 10; ++round) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, m0, hi0, lo0);
    mulhilo8(c2, m1, hi1, lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), key0);
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), key1);
    c1 = lo1;
    c3 = lo0;
    key0 = _mm256_add_epi32(key0, w0);
    key1 = _mm256_add_epi32(key1, w1);
  }
}

// 8 aligned uint32 words at p.
inline __m256i load8(const uint32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
inline void store8(uint32_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }

}  // namespace fastrl::cpu

#endif  // __AVX2__
