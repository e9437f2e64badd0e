// CUDA kernel of the fused centred RMSProp step (math: core/rmsprop.h): a grid-stride loop, one
// element a thread, one launch per parameter.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/rmsprop.h"

namespace fastrl::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // enough to fill any GPU; the loop strides over the rest

template <typename T>
__global__ void rmsprop_centered_kernel(T* param, const T* grad, T* square_avg, T* grad_avg, int64_t n,
                                        core::RMSpropHypers<T> h) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    core::rmsprop_centered(param[i], grad[i], square_avg[i], grad_avg[i], h);
  }
}

struct Cuda {
  template <typename T>
  static void run(T* param, const T* grad, T* square_avg, T* grad_avg, int64_t n, const core::RMSpropHypers<T>& h) {
    const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
    rmsprop_centered_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        param, grad, square_avg, grad_avg, n, h);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace
}  // namespace fastrl::cuda

TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  m.impl("rmsprop_centered_", TORCH_FN(fastrl::rmsprop_centered_<fastrl::cuda::Cuda>));
}
