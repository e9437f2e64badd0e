// The MinAtar ops' schemas, what fastrl.envs reads from the game registry
// (core/minatar/registry.h) and MinAtarBinding, the hot path of fastrl.envs' MinAtar envs (the
// ops with the env's tensors bound once, as EnvBinding does for the classic envs).
#include "minatar_binding.h"

#include <pybind11/stl.h>
#include <torch/csrc/Exceptions.h>
#include <torch/library.h>
#include <torch/python.h>

#include <string>
#include <utility>
#include <vector>

#include "ops/minatar.h"

// The classic env ops' schemas (csrc/bindings.cpp), on state int32 [N, 1 + S]: obs and
// final_obs are bool [N, 10, 10, C]; params are core::minatar::kParams' values.
TORCH_LIBRARY_FRAGMENT(fastrl, m) {
  m.def("minatar_reset(str env, Tensor(a!) state, Tensor(b!) elapsed, Tensor(c!) episode_return, "
        "Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, float[] params) -> Tensor obs");
  m.def("minatar_step(str env, Tensor(a!) state, Tensor(b!) elapsed, "
        "Tensor(c!) episode_return, Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, "
        "Tensor action, float[] params, int max_episode_steps, bool same_step) -> (Tensor obs, "
        "Tensor reward, Tensor terminated, Tensor truncated, Tensor done, Tensor final_obs, "
        "Tensor final_return, Tensor final_length)");
}

namespace fastrl {
namespace {

namespace py = pybind11;

class MinAtarBinding {
 public:
  MinAtarBinding(std::string env, EnvTensors tensors, std::vector<double> params,
                 int64_t max_episode_steps, bool same_step)
      : env_(std::move(env)),
        t_(std::move(tensors)),
        params_(std::move(params)),
        max_episode_steps_(max_episode_steps),
        same_step_(same_step) {}

  template <typename Op, typename... Args>
  auto call(Op op, const Args&... args) const {
    return op(env_, t_.state, t_.elapsed, t_.episode_return, t_.autoreset, t_.resets, t_.seeds,
              args...);
  }

  at::Tensor reset() const {
#ifdef FASTRL_WITH_CUDA
    if (t_.state.is_cuda()) return call(&cuda::minatar_reset, params_);
#endif
    return call(&cpu::minatar_reset, params_);
  }

  StepTuple step(const at::Tensor& action) const {
#ifdef FASTRL_WITH_CUDA
    if (t_.state.is_cuda())
      return call(&cuda::minatar_step, action, params_, max_episode_steps_, same_step_);
#endif
    return call(&cpu::minatar_step, action, params_, max_episode_steps_, same_step_);
  }

 private:
  std::string env_;
  EnvTensors t_;
  std::vector<double> params_;
  int64_t max_episode_steps_;
  bool same_step_;
};

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

void bind_minatar(py::module_& m) {
  m.def("minatar_games", &minatar_games,
        "The native MinAtar games by name: channels, fields (name, count, low, high) of the "
        "int32 state row, minimal_actions, reset_draws and step_draws.");
  m.def(
      "minatar_params",
      [] {
        py::list params;
        for (const core::EnvParam& p : core::minatar::kParams) {
          py::object value = p.flag ? py::object(py::bool_(p.default_value != 0.0))
                                    : py::object(py::float_(p.default_value));
          params.append(py::make_tuple(p.name, value));
        }
        return params;
      },
      "The MinAtar games' keyword arguments (name, default), in the order the ops take them.");
  py::class_<MinAtarBinding>(m, "MinAtarBinding")
      .def(py::init([](std::string env, at::Tensor state, at::Tensor elapsed,
                       at::Tensor episode_return, at::Tensor autoreset, at::Tensor resets,
                       at::Tensor seeds, std::vector<double> params, int64_t max_episode_steps,
                       bool same_step) {
             return MinAtarBinding(std::move(env),
                                   {state, elapsed, episode_return, autoreset, resets, seeds},
                                   std::move(params), max_episode_steps, same_step);
           }),
           py::arg("env"), py::arg("state"), py::arg("elapsed"), py::arg("episode_return"),
           py::arg("autoreset"), py::arg("resets"), py::arg("seeds"), py::arg("params"),
           py::arg("max_episode_steps"), py::arg("same_step"))
      .def("reset",
           [](const MinAtarBinding& b) {
             HANDLE_TH_ERRORS
             py::gil_scoped_release no_gil;
             return b.reset();
             END_HANDLE_TH_ERRORS_PYBIND
           })
      .def(
          "step",
          [](const MinAtarBinding& b, const at::Tensor& action) {
            HANDLE_TH_ERRORS
            py::gil_scoped_release no_gil;
            return b.step(action);
            END_HANDLE_TH_ERRORS_PYBIND
          },
          py::arg("action"));
}

}  // namespace fastrl
