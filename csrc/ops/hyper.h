// Hyper-parameters of the ops (gamma, lam, clip ranges, coefficients, temperature). Each op that
// takes them comes twice (csrc/bindings.cpp): <op> takes Python floats; <op>_tensor_hyper takes
// 0-dim CPU tensors, which is what the Python wrappers pass under torch.compile. There a float
// that changes between calls (an annealed coefficient) is symbolic, and a `float` argument of a
// custom op pins it to one value per compiled graph (a recompile each time it changes); a tensor
// argument does not. The op templates in ops/*.h take a Hypers parameter naming the C++ types of
// one of the two, read values with hyper(), and are registered twice (ops/register.h).
#pragma once

#include <ATen/ATen.h>
#include <optional>

namespace fastrl {

struct FloatHypers {
  using Arg = double;
  using OptionalArg = std::optional<double>;
};

struct TensorHypers {
  using Arg = const at::Tensor&;
  using OptionalArg = const std::optional<at::Tensor>&;
};

inline double hyper(double x) { return x; }

inline double hyper(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 0 && x.device().is_cpu(),
              "fastrl: a hyper-parameter tensor must be 0-dim on the CPU, got shape ", x.sizes(),
              " on ", x.device());
  return x.item<double>();  // on the CPU: no device sync
}

template <typename T>
std::optional<double> hyper(const std::optional<T>& x) {
  return x ? std::optional<double>(hyper(*x)) : std::nullopt;
}

}  // namespace fastrl
