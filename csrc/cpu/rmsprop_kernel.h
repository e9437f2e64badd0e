// The CPU loop of the fused centred RMSProp step over elements [begin, end) of one parameter,
// compiled twice: baseline x86-64 (rmsprop.cpp) and AVX2 + FMA (rmsprop_avx2.cpp). Every
// operation rounds once either way (core/rmsprop.h), so the two builds agree bit for bit.
#pragma once

#include <cstdint>

#include "core/rmsprop.h"

namespace fastrl::cpu {
namespace {  // a copy per build: the linker must not swap the AVX2 one for the baseline one

template <typename T>
void rmsprop_centered_range(T* param, const T* grad, T* square_avg, T* grad_avg, int64_t begin,
                                   int64_t end, const core::RMSpropHypers<T>& h) {
  // The four arrays are distinct tensors; the pragma lets GCC vectorize without alias checks.
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) core::rmsprop_centered(param[i], grad[i], square_avg[i], grad_avg[i], h);
}

}  // namespace

namespace avx2 {

// rmsprop_centered_range built with -mavx2 -mfma (rmsprop_avx2.cpp); call only if enabled().
template <typename T>
void rmsprop_centered_range(T* param, const T* grad, T* square_avg, T* grad_avg, int64_t begin, int64_t end,
                            const core::RMSpropHypers<T>& h);

}  // namespace avx2
}  // namespace fastrl::cpu
