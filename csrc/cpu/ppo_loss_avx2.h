// Vectorized float32 row passes of the fused PPO loss for x86-64 CPUs with AVX2 + FMA
// (ppo_loss_avx2.cpp, the only file compiled with -mavx2 -mfma); ppo_loss.cpp calls them after
// a runtime check and otherwise runs the scalar passes, so the wheel still runs on any x86-64.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "core/ppo_loss.h"
#include "cpu/avx2.h"

namespace fastrl::cpu::avx2 {

// The softmax sums of row r: max, then S and W relative to it, 8 lanes x 4 accumulators
// summed block by block. Rows whose maximum is not finite take the scalar core path.
template <typename scalar_t>
core::SoftmaxSums<float> row_sums(const core::LogitRows<scalar_t, float>& rows, int64_t r);

// grad[r, :] for a row that needs reading (GradProblem::zero(r) is false).
template <typename scalar_t>
void grad_row(const core::GradProblem<scalar_t, float>& p, int64_t r);

}  // namespace fastrl::cpu::avx2
