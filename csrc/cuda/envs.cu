// CUDA kernels for the batched environments (math in core/envs/): a thread per env runs
// core::advance and, for the rare env that needs it, core::autoreset. State is SoA, so a warp's
// loads and stores of one state component coalesce.
// MinAtar games (core/minatar/): a thread per env runs core::minatar::step_env (sticky action,
// the game's frame, autoreset) on its own state row, the observations zeroed beforehand. Their
// action values are not checked here (that would need a host sync): fastrl.envs checks them when
// `validate` is true, and step_env takes an unchecked one out of range as the no-op.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "ops/envs.h"
#include "ops/minatar.h"

namespace fastrl::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMinAtarThreads = 128;  // the MinAtar kernels' block size

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

template <bool kReset, typename Game, typename T>
__global__ void minatar_kernel(core::minatar::MinAtarBatch<Game, T> b) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= b.n) return;
  if (kReset) {
    core::minatar::reset_env(b, j);
  } else {
    core::minatar::StepStream rng = core::minatar::step_stream(b, j);
    core::minatar::step_env(b, j, rng);
  }
}

unsigned blocks(int64_t n, int threads = kThreads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

template <bool kReset, typename Game, typename T>
void launch_minatar(const core::minatar::MinAtarBatch<Game, T>& b) {
  minatar_kernel<kReset><<<blocks(b.n, kMinAtarThreads), kMinAtarThreads, 0,
                           c10::cuda::getCurrentCUDAStream()>>>(b);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The backend of the ops in ops/envs.h and ops/minatar.h.
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

  template <typename Game, typename T>
  static void reset(const core::minatar::MinAtarBatch<Game, T>& b) {
    launch_minatar<true>(b);
  }
  template <typename Game, typename T>
  static void step(const core::minatar::MinAtarBatch<Game, T>& b, bool /*same_step: in b*/) {
    // Zeroed in one coalesced memset: a thread clearing its own env's 400-1000 bytes writes a
    // line per byte of every warp store. The kernel then writes only the cells that are set.
    const size_t bytes = static_cast<size_t>(b.n) * b.kObs;
    auto stream = c10::cuda::getCurrentCUDAStream();
    C10_CUDA_CHECK(cudaMemsetAsync(b.obs, 0, bytes, stream));
    if (b.same_step) C10_CUDA_CHECK(cudaMemsetAsync(b.final_obs, 0, bytes, stream));
    launch_minatar<false>(b);
  }
};

}  // namespace
}  // namespace fastrl::cuda

TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  fastrl::register_env_ops<fastrl::cuda::Cuda>(m);
}
