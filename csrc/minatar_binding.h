// The MinAtar part of the pybind11 module fastrl._C (csrc/minatar_binding.cpp), added to it by
// csrc/bindings.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace fastrl {

// Adds MinAtarBinding and minatar_games() to `m`.
void bind_minatar(pybind11::module_& m);

}  // namespace fastrl
