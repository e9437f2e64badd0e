// CUDA kernels for the batched environments (math in core/envs/): a thread per env runs
// core::advance and, for the rare env that needs it, core::autoreset. State is SoA, so a warp's
// loads and stores of one state component coalesce.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

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

}  // namespace

at::Tensor env_reset(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                     const at::Tensor& episode_return, const at::Tensor& autoreset,
                     const at::Tensor& resets, const at::Tensor& seeds,
                     std::vector<double> params) {
  const c10::cuda::CUDAGuard guard(state.device());
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return env_reset_op(
      [](const auto& b) {
        reset_kernel<<<blocks(b.n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(b);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      env, e, params);
}

StepOutputs env_step(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                     const at::Tensor& episode_return, const at::Tensor& autoreset,
                     const at::Tensor& resets, const at::Tensor& seeds, const at::Tensor& action,
                     std::vector<double> params, int64_t max_episode_steps, bool same_step) {
  const c10::cuda::CUDAGuard guard(state.device());
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return env_step_op(
      [same_step](const auto& b) {
        auto stream = c10::cuda::getCurrentCUDAStream();
        if (same_step) {
          step_kernel<true><<<blocks(b.n), kThreads, 0, stream>>>(b);
        } else {
          step_kernel<false><<<blocks(b.n), kThreads, 0, stream>>>(b);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      env, e, action, params, max_episode_steps, same_step);
}

}  // namespace fastrl::cuda
