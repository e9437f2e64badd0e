// Shared by every core header: the host/device marker and a strided 2-D view.
// Everything in csrc/core is torch-free and header-only so that the CPU kernels (compiled and
// tested on every CI run) and the CUDA kernels execute exactly the same arithmetic.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FASTRL_HD __host__ __device__ __forceinline__
#else
#define FASTRL_HD inline
#endif

namespace fastrl::core {

// A [rows, cols] view with arbitrary strides, so kernels read transposed or sliced tensors
// in place (batch-first rollouts, every-other-step views) without a copy.
template <typename T>
struct View2D {
  T* data = nullptr;
  int64_t stride0 = 0;
  int64_t stride1 = 0;

  FASTRL_HD T& operator()(int64_t i, int64_t j) const { return data[i * stride0 + j * stride1]; }
};

}  // namespace fastrl::core
