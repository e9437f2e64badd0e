// The env part of fastrl._C: what fastrl.envs reads from the registry (core/envs/registry.h)
// instead of restating it, and EnvBinding, the env ops' hot path.
#include "env_binding.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <pybind11/stl.h>
#include <torch/csrc/Exceptions.h>
#include <torch/python.h>

#include <string>
#include <utility>
#include <vector>

#include "core/envs/registry.h"
#include "cpu/env_kernel.h"
#include "ops/envs.h"

namespace fastrl {
namespace {

namespace py = pybind11;

// The C++ signatures of the env ops (ops/envs.h), whichever backend implements them.
using EnvResetFn = decltype(env_reset<void>);
using EnvStepFn = decltype(env_step<void>);

// fastrl.envs' hot path: env_reset / env_step with the env's tensors and arguments bound once and
// called from pybind11 rather than from Python, whose boxing of env_step's eleven arguments for
// the dispatcher costs about 3 us a step (as much as stepping a thousand CartPoles). The call goes
// straight to the op's CPU or CUDA kernel (the same kernels and checks as the ops): unboxed,
// through handles looked up once, and redispatched to the backend's key, which skips computing
// the key set from eight tensors and the autograd layer (these tensors never require grad).
// torch.compile and TorchScript use the ops.
class EnvBinding {
 public:
  EnvBinding(std::string env, EnvTensors tensors, std::vector<double> params,
             int64_t max_episode_steps, bool same_step, int64_t first_env)
      : env_(std::move(env)),
        t_(std::move(tensors)),
        params_(std::move(params)),
        max_episode_steps_(max_episode_steps),
        same_step_(same_step),
        first_env_(first_env) {}

  at::Tensor reset() const {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastrl::env_reset", "")
                               .typed<EnvResetFn>();
    return op.redispatch(backend(), env_, t_.state, t_.elapsed, t_.episode_return, t_.autoreset,
                         t_.resets, t_.seeds, params_, first_env_);
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
             at::Tensor>
  step(const at::Tensor& action) const {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastrl::env_step", "")
                               .typed<EnvStepFn>();
    return op.redispatch(backend(), env_, t_.state, t_.elapsed, t_.episode_return, t_.autoreset,
                         t_.resets, t_.seeds, action, params_, max_episode_steps_, same_step_,
                         first_env_);
  }

 private:
  c10::DispatchKeySet backend() const {
    return c10::DispatchKeySet(t_.state.is_cuda() ? c10::DispatchKey::CUDA : c10::DispatchKey::CPU);
  }

  std::string env_;
  EnvTensors t_;
  std::vector<double> params_;
  int64_t max_episode_steps_;
  bool same_step_;
  int64_t first_env_;
};

// One env's entry of native_envs(): its dimensions and keyword arguments (name, default), in the
// order the ops take them; flags as bools.
template <typename Env>
py::dict env_spec() {
  py::list params;
  for (const core::EnvParam& p : Env::kParams) {
    py::object value = p.flag ? py::object(py::bool_(p.default_value != 0.0))
                              : py::object(py::float_(p.default_value));
    params.append(py::make_tuple(p.name, value));
  }
  py::dict spec;
  spec["state_dim"] = Env::kStateDim;
  spec["obs_dim"] = Env::kObsDim;
  spec["reset_draws"] = Env::kResetDraws;
  spec["params"] = params;
  return spec;
}

py::dict native_envs() {
  py::dict envs;  // in the registry's order
#define FASTRL_ENV_SPEC(Env) envs[core::Env<float>::kId] = env_spec<core::Env<float>>();
  FASTRL_NATIVE_ENVS(FASTRL_ENV_SPEC)
#undef FASTRL_ENV_SPEC
  return envs;
}

}  // namespace

void bind_envs(py::module_& m) {
  m.def("native_envs", &native_envs,
        "The native envs by gymnasium id: state_dim, obs_dim, reset_draws and params, the "
        "keyword arguments (name, default) in the order the env ops take them.");
  m.def(
      "philox_constants",
      [] {
        py::dict c;
        c["multipliers"] = py::make_tuple(core::kPhiloxM0, core::kPhiloxM1);
        c["key_increments"] = py::make_tuple(core::kPhiloxW0, core::kPhiloxW1);
        return c;
      },
      "Philox4x32-10's multipliers (of words 0 and 2) and key increments (of k0 and k1).");
  m.def(
      "env_kernel_sizes",
      [] {
        py::dict sizes;
        sizes["chunk"] = cpu::kChunk;  // envs per pass of the CPU step loop
        sizes["thread_grain"] = cpu::kThreadGrain;  // larger batches are split over threads
        return sizes;
      },
      "The CPU env kernel's chunk of envs and the batch size above which it uses threads.");
  py::class_<EnvBinding>(m, "EnvBinding")
      .def(py::init([](std::string env, at::Tensor state, at::Tensor elapsed,
                       at::Tensor episode_return, at::Tensor autoreset, at::Tensor resets,
                       at::Tensor seeds, std::vector<double> params, int64_t max_episode_steps,
                       bool same_step, int64_t first_env) {
             return EnvBinding(std::move(env),
                               {state, elapsed, episode_return, autoreset, resets, seeds},
                               std::move(params), max_episode_steps, same_step, first_env);
           }),
           py::arg("env"), py::arg("state"), py::arg("elapsed"), py::arg("episode_return"),
           py::arg("autoreset"), py::arg("resets"), py::arg("seeds"), py::arg("params"),
           py::arg("max_episode_steps"), py::arg("same_step"), py::arg("first_env") = 0)
      // HANDLE_TH_ERRORS: c10 errors become the Python exceptions torch raises for them
      // (TypeError, ValueError, ...), without the C++ backtrace.
      .def("reset",
           [](const EnvBinding& b) {
             HANDLE_TH_ERRORS
             py::gil_scoped_release no_gil;
             return b.reset();
             END_HANDLE_TH_ERRORS_PYBIND
           })
      .def(
          "step",
          [](const EnvBinding& b, const at::Tensor& action) {
            HANDLE_TH_ERRORS
            py::gil_scoped_release no_gil;
            return b.step(action);
            END_HANDLE_TH_ERRORS_PYBIND
          },
          py::arg("action"));
}

}  // namespace fastrl
