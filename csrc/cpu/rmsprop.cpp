// CPU kernel of the fused centred RMSProp step (math: core/rmsprop.h): one pass over each
// parameter, in chunks over threads when it is large, through the AVX2 + FMA build of the loop
// where the CPU has it (cpu/avx2.h), else the baseline build.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/avx2.h"
#include "cpu/rmsprop_kernel.h"
#include "ops/rmsprop.h"

namespace fastrl::cpu {
namespace {

// Elements per task: a smaller parameter (the MinAtar DQN's largest has 131k) is updated on the
// calling thread, as waking another costs more than the ~0.3 ns an element.
constexpr int64_t kGrain = 1 << 18;

struct Cpu {
  template <typename T>
  static void run(T* param, const T* grad, T* square_avg, T* grad_avg, int64_t n, const core::RMSpropHypers<T>& h) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
#if defined(FASTRL_WITH_AVX2)
      if (avx2::enabled()) return avx2::rmsprop_centered_range(param, grad, square_avg, grad_avg, begin, end, h);
#endif
      rmsprop_centered_range(param, grad, square_avg, grad_avg, begin, end, h);
    });
  }
};

}  // namespace
}  // namespace fastrl::cpu

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  m.impl("rmsprop_centered_", TORCH_FN(fastrl::rmsprop_centered_<fastrl::cpu::Cpu>));
}
