// cpu::step_range, cpu::actions_valid and cpu::minatar_step_range built with -mavx2 (and without
// -mfma: no fused multiply-adds, so every result is bit-identical to the baseline build's;
// -ffp-contract=off applies to every file anyway).
// `flatten` inlines the whole step into each entry point, so no inline function compiled here
// for AVX2 can be picked by the linker for the baseline build's callers.
#include "cpu/envs_avx2.h"

#include "core/envs/registry.h"
#include "core/minatar/registry.h"
#include "cpu/env_kernel.h"
#include "cpu/minatar_kernel.h"

#if !defined(__AVX2__)
#error "envs_avx2.cpp must be compiled with -mavx2 (see CMakeLists.txt)"
#endif

namespace fastrl::cpu::avx2 {

template <bool kSameStep, typename Env, typename T>
__attribute__((flatten)) void step_range(const core::EnvBatch<Env, T>& b, int64_t begin,
                                         int64_t end) {
  cpu::step_range<kSameStep>(b, begin, end);
}

template <typename Env, typename T>
__attribute__((flatten)) bool actions_valid(const core::EnvBatch<Env, T>& b) {
  return cpu::actions_valid(b);
}

template <typename Game, typename T>
__attribute__((flatten)) void minatar_step_range(const core::minatar::MinAtarBatch<Game, T>& b,
                                                 int64_t begin, int64_t end) {
  cpu::minatar_step_range(b, begin, end);
}

// Every env of the registry, float32 and float64, both autoreset modes.
#define FASTRL_AVX2_ENV(Env, T)                                                                \
  template void step_range<false>(const core::EnvBatch<core::Env<T>, T>&, int64_t, int64_t); \
  template void step_range<true>(const core::EnvBatch<core::Env<T>, T>&, int64_t, int64_t);  \
  template bool actions_valid(const core::EnvBatch<core::Env<T>, T>&);
#define FASTRL_AVX2_ENVS(Env) FASTRL_AVX2_ENV(Env, float) FASTRL_AVX2_ENV(Env, double)
FASTRL_NATIVE_ENVS(FASTRL_AVX2_ENVS)

// Every MinAtar game, float32 and float64 returns.
#define FASTRL_AVX2_GAME(Game, T) \
  template void minatar_step_range(const core::minatar::MinAtarBatch<core::minatar::Game, T>&, int64_t, int64_t);
#define FASTRL_AVX2_GAMES(Game) FASTRL_AVX2_GAME(Game, float) FASTRL_AVX2_GAME(Game, double)
FASTRL_MINATAR_GAMES(FASTRL_AVX2_GAMES)

}  // namespace fastrl::cpu::avx2
