// CUDA kernels for the batched environments (math in core/envs/): a thread per env runs
// core::advance and, for the rare env that needs it, core::autoreset. State is SoA, so a warp's
// loads and stores of one state component coalesce.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/envs.h"

namespace fastrl::cuda {
namespace {

constexpr int kThreads = 256;

template <bool kSameStep, typename Env, typename T>
__global__ void step_kernel(core::EnvBatch<Env, T> b) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < b.n && core::advance<kSameStep>(b, j)) core::autoreset(b, j);
}

template <typename Env, typename T>
__global__ void reset_kernel(core::EnvBatch<Env, T> b) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < b.n) core::reset_env(b, j);
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// The backend of the ops in ops/envs.h.
struct Cuda {
  template <typename Env, typename T>
  static void reset(const core::EnvBatch<Env, T>& b) {
    reset_kernel<<<blocks(b.n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(b);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename Env, typename T>
  static void step(const core::EnvBatch<Env, T>& b, bool same_step) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    if (same_step) {
      step_kernel<true><<<blocks(b.n), kThreads, 0, stream>>>(b);
    } else {
      step_kernel<false><<<blocks(b.n), kThreads, 0, stream>>>(b);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace
}  // namespace fastrl::cuda

TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  m.impl("env_reset", TORCH_FN(fastrl::env_reset<fastrl::cuda::Cuda>));
  m.impl("env_step", TORCH_FN(fastrl::env_step<fastrl::cuda::Cuda>));
}
