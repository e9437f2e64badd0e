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
  at::Tensor obs;
  visit_env(env, [&](auto tag) {
    AT_DISPATCH_FLOATING_TYPES(state.scalar_type(), "fastrl::env_reset", [&] {
      using Env = typename decltype(tag)::template type<scalar_t>;
      check_env_tensors<Env>(e, params);
      obs = at::empty({state.size(1), Env::kObsDim}, state.options());
      auto b = make_env_batch<Env, scalar_t>(e, params);
      b.obs = obs.data_ptr<scalar_t>();
      if (b.n == 0) return;
      reset_kernel<<<blocks(b.n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(b);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return obs;
}

StepOutputs env_step(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                     const at::Tensor& episode_return, const at::Tensor& autoreset,
                     const at::Tensor& resets, const at::Tensor& seeds, const at::Tensor& action,
                     std::vector<double> params, int64_t max_episode_steps, bool same_step) {
  const c10::cuda::CUDAGuard guard(state.device());
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  StepOutputs out;
  visit_env(env, [&](auto tag) {
    AT_DISPATCH_FLOATING_TYPES(state.scalar_type(), "fastrl::env_step", [&] {
      using Env = typename decltype(tag)::template type<scalar_t>;
      check_env_tensors<Env>(e, params);
      auto b = make_step_batch<Env, scalar_t>(e, action, params, max_episode_steps, same_step, out);
      if (b.n == 0) return;
      auto stream = c10::cuda::getCurrentCUDAStream();
      if (same_step) {
        step_kernel<true><<<blocks(b.n), kThreads, 0, stream>>>(b);
      } else {
        step_kernel<false><<<blocks(b.n), kThreads, 0, stream>>>(b);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace fastrl::cuda
