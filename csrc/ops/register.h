// Registration of the op templates of ops/*.h with a backend, one line per op. Each family header
// lists its ops once, in a function template over the backend (register_returns_ops<Backend>(m)
// in ops/returns.h, ...), which each backend of the family calls from its
// TORCH_LIBRARY_IMPL(fastrl, CPU|CUDA, m) block (cpu/*.cpp, cuda/*.cu):
//   FASTRL_IMPL(m, env_step, Backend);               fastrl::env_step<Backend> as "env_step"
//   FASTRL_IMPL_WITH_TENSOR_HYPER(m, gae, Backend);  fastrl::gae<Backend, FloatHypers> as "gae" and
//                                                    <Backend, TensorHypers> as "gae_tensor_hyper"
// The second is for ops with float hyper-parameters, whose schema bindings.cpp defines with
// def_with_tensor_hyper (the twins: ops/hyper.h).
#pragma once

#include <torch/library.h>

#include "ops/hyper.h"

#define FASTRL_IMPL(m, op, Backend) m.impl(#op, TORCH_FN(fastrl::op<Backend>))

#define FASTRL_IMPL_WITH_TENSOR_HYPER(m, op, Backend)               \
  m.impl(#op, TORCH_FN((fastrl::op<Backend, fastrl::FloatHypers>))); \
  m.impl(#op "_tensor_hyper", TORCH_FN((fastrl::op<Backend, fastrl::TensorHypers>)))
