// The env part of the pybind11 module fastrl._C (csrc/env_binding.cpp), added to it by
// csrc/module.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace fastrl {

// Adds EnvBinding, MinAtarBinding, native_envs(), minatar_games(), minatar_params(),
// philox_constants() and env_kernel_sizes() to `m`.
void bind_envs(pybind11::module_& m);

}  // namespace fastrl
