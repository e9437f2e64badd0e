// The env part of fastrl._C: what fastrl.envs reads from the registries (core/envs/registry.h,
// core/minatar/registry.h) instead of restating it, and EnvBinding, the env ops' hot path, for
// the classic envs (_C.EnvBinding) and the MinAtar games (_C.MinAtarBinding).
#include "env_binding.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <pybind11/stl.h>
#include <torch/csrc/Exceptions.h>
#include <torch/python.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "core/envs/registry.h"
#include "cpu/env_kernel.h"
#include "ops/envs.h"
#include "ops/minatar.h"

namespace fastrl {
namespace {

namespace py = pybind11;

// The C++ signatures of the env ops (ops/envs.h; ops/minatar.h's take the same arguments),
// whichever backend implements them.
using EnvResetFn = decltype(env_reset<void>);
using EnvStepFn = decltype(env_step<void>);

// The ops an EnvBinding calls: the classic envs' or the MinAtar games'.
struct ClassicOps {
  static constexpr const char* kReset = "fastrl::env_reset";
  static constexpr const char* kStep = "fastrl::env_step";
};
struct MinAtarOps {
  static constexpr const char* kReset = "fastrl::minatar_reset";
  static constexpr const char* kStep = "fastrl::minatar_step";
};

// fastrl.envs' hot path: the reset and step ops of an env family (Ops) with the env's tensors and
// arguments bound once and called from pybind11 rather than from Python, whose boxing of
// env_step's eleven arguments for the dispatcher costs about 3 us a step (as much as stepping a
// thousand CartPoles). The call goes straight to the op's CPU or CUDA kernel (the same kernels and
// checks as the ops): unboxed, through handles looked up once, and redispatched to the backend's
// key, which skips computing the key set from eight tensors and the autograd layer (these
// tensors never require grad). torch.compile and TorchScript use the ops.
template <typename Ops>
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
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow(Ops::kReset, "").template typed<EnvResetFn>();
    return op.redispatch(backend(), env_, t_.state, t_.elapsed, t_.episode_return, t_.autoreset,
                         t_.resets, t_.seeds, params_, first_env_);
  }

  StepTuple step(const at::Tensor& action) const {
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow(Ops::kStep, "").template typed<EnvStepFn>();
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

// Adds EnvBinding<Ops> to `m` as `name`: its constructor, reset() and step(action).
template <typename Ops>
void bind_class(py::module_& m, const char* name) {
  using Binding = EnvBinding<Ops>;
  py::class_<Binding>(m, name)
      .def(py::init([](std::string env, at::Tensor state, at::Tensor elapsed,
                       at::Tensor episode_return, at::Tensor autoreset, at::Tensor resets,
                       at::Tensor seeds, std::vector<double> params, int64_t max_episode_steps,
                       bool same_step, int64_t first_env) {
             return Binding(std::move(env), {state, elapsed, episode_return, autoreset, resets, seeds},
                            std::move(params), max_episode_steps, same_step, first_env);
           }),
           py::arg("env"), py::arg("state"), py::arg("elapsed"), py::arg("episode_return"),
           py::arg("autoreset"), py::arg("resets"), py::arg("seeds"), py::arg("params"),
           py::arg("max_episode_steps"), py::arg("same_step"), py::arg("first_env") = 0)
      // HANDLE_TH_ERRORS: c10 errors become the Python exceptions torch raises for them
      // (TypeError, ValueError, ...), without the C++ backtrace.
      .def("reset",
           [](const Binding& b) {
             HANDLE_TH_ERRORS
             py::gil_scoped_release no_gil;
             return b.reset();
             END_HANDLE_TH_ERRORS_PYBIND
           })
      .def(
          "step",
          [](const Binding& b, const at::Tensor& action) {
            HANDLE_TH_ERRORS
            py::gil_scoped_release no_gil;
            return b.step(action);
            END_HANDLE_TH_ERRORS_PYBIND
          },
          py::arg("action"));
}

// Keyword arguments (name, default) in the order the ops take them; flags as bools.
template <size_t N>
py::list param_list(const std::array<core::EnvParam, N>& params) {
  py::list out;
  for (const core::EnvParam& p : params) {
    py::object value = p.flag ? py::object(py::bool_(p.default_value != 0.0))
                              : py::object(py::float_(p.default_value));
    out.append(py::make_tuple(p.name, value));
  }
  return out;
}

// One env's entry of native_envs(): its dimensions and keyword arguments.
template <typename Env>
py::dict env_spec() {
  py::dict spec;
  spec["state_dim"] = Env::kStateDim;
  spec["obs_dim"] = Env::kObsDim;
  spec["reset_draws"] = Env::kResetDraws;
  spec["params"] = param_list(Env::kParams);
  return spec;
}

py::dict native_envs() {
  py::dict envs;  // in the registry's order
#define FASTRL_ENV_SPEC(Env) envs[core::Env<float>::kId] = env_spec<core::Env<float>>();
  FASTRL_NATIVE_ENVS(FASTRL_ENV_SPEC)
#undef FASTRL_ENV_SPEC
  return envs;
}

// One game's entry of minatar_games(): the fields of its int32 state row, its actions and draws.
template <typename Game>
py::dict game_spec() {
  py::list fields;
  fields.append(py::make_tuple("last_action", 1, 0, core::minatar::kNumActions - 1));
  for (const core::minatar::StateField& f : Game::kFields) {
    fields.append(py::make_tuple(f.name, f.count, f.low, f.high));
  }
  py::list minimal;
  for (int32_t a : Game::kMinimalActions) minimal.append(a);
  py::dict spec;
  spec["channels"] = Game::kChannels;
  spec["fields"] = fields;
  spec["minimal_actions"] = minimal;
  spec["reset_draws"] = Game::kResetDraws;
  spec["step_draws"] = Game::kStepDraws;
  return spec;
}

py::dict minatar_games() {
  py::dict games;
#define FASTRL_GAME_SPEC(Game) \
  games[core::minatar::Game::kName] = game_spec<core::minatar::Game>();
  FASTRL_MINATAR_GAMES(FASTRL_GAME_SPEC)
#undef FASTRL_GAME_SPEC
  return games;
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
  m.def("minatar_games", &minatar_games,
        "The native MinAtar games by name: channels, fields (name, count, low, high) of the "
        "int32 state row, minimal_actions, reset_draws and step_draws.");
  m.def(
      "minatar_params", [] { return param_list(core::minatar::kParams); },
      "The MinAtar games' keyword arguments (name, default), in the order the ops take them.");
  bind_class<ClassicOps>(m, "EnvBinding");
  bind_class<MinAtarOps>(m, "MinAtarBinding");
}

}  // namespace fastrl
