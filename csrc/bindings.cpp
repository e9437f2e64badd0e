// The op table: schemas, per-device implementations, and the small pybind11 module.
// Kernels live in cpu/ and cuda/; fake (meta) kernels and Python wrappers in fastrl/ops/.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <pybind11/pybind11.h>
#include <torch/python.h>

#include <mutex>
#include <set>
#include <thread>

#include "cpu/avx2.h"
#include "env_binding.h"
#include "minatar_binding.h"
#include "ops/envs.h"
#include "ops/ppo_loss.h"
#include "ops/returns.h"

TORCH_LIBRARY(fastrl, m) {
  // Time-major [T, N] views with any strides; flags and mask are bool.
  m.def("gae(Tensor rewards, Tensor values, Tensor next_values, Tensor terminated, Tensor done, "
        "Tensor? mask, float gamma, float lam) -> (Tensor advantages, Tensor returns)");
  m.def("discounted_returns(Tensor rewards, Tensor done, Tensor bootstrap, Tensor? mask, "
        "float gamma) -> Tensor");
  // Batched environments, stepped in place: state [S, N] SoA, per-env counters [N]; `params` are
  // the env's keyword arguments in the order of its kParams (core/envs/<env>.h, _C.native_envs).
  m.def("env_reset(str env, Tensor(a!) state, Tensor(b!) elapsed, Tensor(c!) episode_return, "
        "Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, float[] params) -> Tensor obs");
  m.def("env_step(str env, Tensor(a!) state, Tensor(b!) elapsed, Tensor(c!) episode_return, "
        "Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, Tensor action, float[] params, "
        "int max_episode_steps, bool same_step) -> (Tensor obs, Tensor reward, Tensor terminated, "
        "Tensor truncated, Tensor done, Tensor final_obs, Tensor final_return, Tensor final_length)");
  // logits [N, V] (half/bfloat16/float/double, any strides), actions int64 [N], mask bool [N];
  // per-token tensors [N] in float32 (float64 for float64 logits). Math: core/ppo_loss.h.
  m.def("token_logprobs(Tensor logits, Tensor actions, Tensor? mask, float temperature) "
        "-> (Tensor logp, Tensor entropy, Tensor lse)");
  m.def("token_logprobs_backward(Tensor grad_logp, Tensor grad_entropy, Tensor logits, "
        "Tensor actions, Tensor? mask, Tensor lse, Tensor entropy, float temperature) -> Tensor");
  m.def("ppo_loss(Tensor logits, Tensor actions, Tensor old_logprobs, Tensor advantages, "
        "Tensor? ref_logprobs, Tensor? mask, float clip_low, float clip_high, float? dual_clip, "
        "float kl_coef, str kl_estimator, float entropy_coef, float temperature) -> (Tensor loss, "
        "Tensor logp, Tensor entropy, Tensor lse, Tensor dloss_dlogp, Tensor ratio, Tensor kl, "
        "Tensor clipped)");
}

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  m.impl("gae", &fastrl::cpu::gae);
  m.impl("discounted_returns", &fastrl::cpu::discounted_returns);
  m.impl("env_reset", &fastrl::cpu::env_reset);
  m.impl("env_step", &fastrl::cpu::env_step);
  m.impl("token_logprobs", &fastrl::cpu::token_logprobs);
  m.impl("token_logprobs_backward", &fastrl::cpu::token_logprobs_backward);
  m.impl("ppo_loss", &fastrl::cpu::ppo_loss);
}

#ifdef FASTRL_WITH_CUDA
TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  m.impl("gae", &fastrl::cuda::gae);
  m.impl("discounted_returns", &fastrl::cuda::discounted_returns);
  m.impl("env_reset", &fastrl::cuda::env_reset);
  m.impl("env_step", &fastrl::cuda::env_step);
  m.impl("token_logprobs", &fastrl::cuda::token_logprobs);
  m.impl("token_logprobs_backward", &fastrl::cuda::token_logprobs_backward);
  m.impl("ppo_loss", &fastrl::cuda::ppo_loss);
}
#endif

namespace {

// How many distinct threads at::parallel_for really used: 1 means the build lost OpenMP.
int parallel_threads_used() {
  std::mutex lock;
  std::set<std::thread::id> ids;
  at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) {
    volatile double sink = 0;
    for (int i = 0; i < 200000; ++i) sink = sink + i;
    std::lock_guard<std::mutex> guard(lock);
    ids.insert(std::this_thread::get_id());
  });
  return static_cast<int>(ids.size());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrl native kernels; the ops are registered as torch.ops.fastrl.*";
  m.def("build_info", [] {
    pybind11::dict info;
#ifdef FASTRL_WITH_CUDA
    info["cuda"] = true;
#else
    info["cuda"] = false;
#endif
    info["torch_version"] = FASTRL_TORCH_VERSION;  // the torch it was compiled against
    info["openmp"] = bool(AT_PARALLEL_OPENMP);
    info["avx2"] = fastrl::cpu::avx2::enabled();  // the *_avx2.cpp kernels run on this CPU
    return info;
  });
  m.def("parallel_threads_used", &parallel_threads_used);
  fastrl::bind_envs(m);  // EnvBinding and the env registry: csrc/env_binding.cpp
  fastrl::bind_minatar(m);  // MinAtar: csrc/minatar_binding.cpp
}
