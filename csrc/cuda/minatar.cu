// CUDA kernels of the MinAtar games (game logic in core/minatar/): a thread per env runs
// core::minatar::step_env (sticky action, the game's frame, autoreset) on its own state row.
// Action values are not checked here (that would need a host sync): fastrl.envs checks them
// when `validate` is true, and step_env takes an unchecked one out of range as the no-op.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/minatar.h"

namespace fastrl::cuda {
namespace {

constexpr int kThreads = 128;

template <typename B>
__global__ void minatar_step_kernel(B b) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < b.n) core::minatar::step_env(b, j);
}

template <typename B>
__global__ void minatar_reset_kernel(B b) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < b.n) core::minatar::reset_env(b, j);
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

at::Tensor minatar_reset(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, std::vector<double> params) {
  const c10::cuda::CUDAGuard guard(state.device());
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return minatar_reset_op(
      [](const auto& b) {
        minatar_reset_kernel<<<blocks(b.n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(b);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      env, e, params);
}

StepTuple minatar_step(const std::string& env, const at::Tensor& state,
                         const at::Tensor& elapsed, const at::Tensor& episode_return,
                         const at::Tensor& autoreset, const at::Tensor& resets,
                         const at::Tensor& seeds, const at::Tensor& action,
                         std::vector<double> params, int64_t max_episode_steps, bool same_step) {
  const c10::cuda::CUDAGuard guard(state.device());
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  return minatar_step_op(
      [](const auto& b) {
        minatar_step_kernel<<<blocks(b.n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(b);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      },
      env, e, action, params, max_episode_steps, same_step).tuple();
}

}  // namespace fastrl::cuda

TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  m.impl("minatar_reset", &fastrl::cuda::minatar_reset);
  m.impl("minatar_step", &fastrl::cuda::minatar_step);
}
