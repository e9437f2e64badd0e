// CUDA kernels for token log-probs, the fused PPO loss and their logits gradient
// (math in core/ppo_loss.h).
//
// One block per row. Forward: each thread folds its strided share of the row into online
// softmax sums, the block merges them (warp shuffles, then one warp over the warp results) and
// thread 0 writes the per-token outputs. Backward: each thread recomputes p_i for its share and
// writes the gradient. Contiguous rows are read in 16-byte packs (8 bf16/half, 4 float, 2 double)
// after a short unaligned head, since row starts are not aligned when V is odd.
// Actions outside [0, V) cannot raise without a host sync: their outputs are NaN.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>

#include "ops/ppo_loss.h"

namespace fastrl::cuda {
namespace {

constexpr int kMaxWarps = 32;

int threads_for(int64_t vocab) { return vocab <= 256 ? 32 : (vocab <= 4096 ? 128 : 512); }

// Calls f(i, z_i) for this thread's share of row r (scalar_t z_i, unscaled).
template <typename scalar_t, typename T, typename F>
__device__ void for_each_logit(const core::LogitRows<scalar_t, T>& rows, int64_t r, F f) {
  const scalar_t* row = rows.row(r);
  const int64_t V = rows.vocab;
  const int tid = threadIdx.x, step = blockDim.x;
  if (rows.col_stride != 1) {
    for (int64_t i = tid; i < V; i += step) f(i, row[i * rows.col_stride]);
    return;
  }
  constexpr int kPack = 16 / sizeof(scalar_t);
  struct alignas(16) Pack {
    scalar_t v[kPack];
  };
  const auto misalign = reinterpret_cast<std::uintptr_t>(row) % 16;
  const int64_t head = std::min<int64_t>(V, misalign == 0 ? 0 : (16 - misalign) / sizeof(scalar_t));
  for (int64_t i = tid; i < head; i += step) f(i, row[i]);
  const int64_t packs = (V - head) / kPack;
  const Pack* body = reinterpret_cast<const Pack*>(row + head);
  for (int64_t k = tid; k < packs; k += step) {
    const Pack pack = body[k];
#pragma unroll
    for (int j = 0; j < kPack; ++j) f(head + k * kPack + j, pack.v[j]);
  }
  for (int64_t i = head + packs * kPack + tid; i < V; i += step) f(i, row[i]);
}

template <typename T>
__device__ core::SoftmaxSums<T> warp_merge(core::SoftmaxSums<T> s) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    core::SoftmaxSums<T> other;
    other.max = __shfl_down_sync(0xffffffffu, s.max, offset);
    other.sum = __shfl_down_sync(0xffffffffu, s.sum, offset);
    other.wsum = __shfl_down_sync(0xffffffffu, s.wsum, offset);
    s.merge(other);
  }
  return s;
}

// The merged sums of the whole block, valid in thread 0.
template <typename T>
__device__ core::SoftmaxSums<T> block_merge(core::SoftmaxSums<T> s) {
  __shared__ T maxes[kMaxWarps], sums[kMaxWarps], wsums[kMaxWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  s = warp_merge(s);
  if (lane == 0) {
    maxes[warp] = s.max;
    sums[warp] = s.sum;
    wsums[warp] = s.wsum;
  }
  __syncthreads();
  if (warp == 0) {
    core::SoftmaxSums<T> w;
    if (lane < static_cast<int>(blockDim.x / 32)) {
      w.max = maxes[lane];
      w.sum = sums[lane];
      w.wsum = wsums[lane];
    }
    s = warp_merge(w);
  }
  return s;
}

// Any row reduction (core/ppo_loss.h, RowProblem): one block per row.
template <typename Problem>
__global__ void rows_kernel(Problem p) {
  using T = typename decltype(p.rows)::Acc;
  const int64_t r = blockIdx.x;
  if (!p.rows.active(r)) {
    if (threadIdx.x == 0) p.fill(r, T(0));
    return;
  }
  core::SoftmaxSums<T> sums;
  for_each_logit(p.rows, r, [&](int64_t, auto z) { sums.add(p.rows.scale(z)); });
  sums = block_merge(sums);
  if (threadIdx.x != 0) return;
  if (p.rows.valid_action(r)) {
    p.write(r, sums);
  } else {
    p.fill(r, std::numeric_limits<T>::quiet_NaN());
  }
}

template <typename scalar_t, typename T>
__global__ void grad_kernel(core::GradProblem<scalar_t, T> p) {
  const int64_t r = blockIdx.x;
  scalar_t* grad = p.grad_row(r);
  if (p.zero(r)) {
    for (int64_t i = threadIdx.x; i < p.rows.vocab; i += blockDim.x) grad[i] = scalar_t(0);
    return;
  }
  for_each_logit(p.rows, r,
                 [&](int64_t i, scalar_t z) { grad[i] = p.grad_at(r, i, p.rows.scale(z)); });
}

// The deferred per-token terms (sequence-level importance): a thread per row. Rows with an
// out-of-range action keep the NaN of the row pass.
template <typename Problem>
__global__ void terms_kernel(Problem p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < p.rows.num_rows && p.rows.active(r) && p.rows.valid_action(r)) p.write_terms(r);
}

template <typename Problem, typename Kernel>
void launch(const Problem& p, Kernel kernel) {
  if (p.rows.num_rows == 0) return;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  kernel<<<static_cast<unsigned>(p.rows.num_rows), threads_for(p.rows.vocab), 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The backend of the ops in ops/ppo_loss.h: a row reduction, or the logits gradient.
struct Cuda {
  template <typename Problem>
  static void run(const Problem& p) { launch(p, rows_kernel<Problem>); }
  template <typename Problem>
  static void run_terms(const Problem& p) {
    if (p.rows.num_rows == 0) return;
    constexpr int kThreads = 256;
    const auto blocks = static_cast<unsigned>((p.rows.num_rows + kThreads - 1) / kThreads);
    terms_kernel<Problem><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename scalar_t, typename T>
  static void run(const core::GradProblem<scalar_t, T>& p) { launch(p, grad_kernel<scalar_t, T>); }
};

}  // namespace
}  // namespace fastrl::cuda

TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  fastrl::register_ppo_loss_ops<fastrl::cuda::Cuda>(m);
}
