// The native environments: each one's header, and its line in FASTRL_NATIVE_ENVS. This list is
// the only one: it drives the env ops' dispatch on the id (ops/envs.h visit_env), the AVX2 build
// of the step (cpu/envs_avx2.cpp), what _C.native_envs() tells Python (ids, dimensions, keyword
// arguments: fastrl.envs.NATIVE_ENVS) and the tests' C++ probe (tests/envs/extreme_states.cpp).
// A new env: its header (the interface in core/envs/env.h), an #include and a line here, and its
// PyTorch fallback in fastrl/envs/classic.py.
#pragma once

#include "core/envs/acrobot.h"
#include "core/envs/cartpole.h"
#include "core/envs/continuous_mountain_car.h"
#include "core/envs/mountain_car.h"
#include "core/envs/pendulum.h"

// X(Env) for every native env, Env the class template in fastrl::core.
#define FASTRL_NATIVE_ENVS(X) \
  X(CartPole)                 \
  X(Acrobot)                  \
  X(MountainCar)              \
  X(MountainCarContinuous)    \
  X(Pendulum)
