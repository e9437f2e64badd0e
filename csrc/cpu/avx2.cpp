#include "cpu/avx2.h"

#include <ATen/Version.h>

#include <string>

namespace fastrl::cpu::avx2 {

bool enabled() {
#if defined(FASTRL_WITH_AVX2)
  // ATen's own choice ("DEFAULT", "AVX2", "AVX512"): it checks the CPU for AVX2 and FMA and
  // honours ATEN_CPU_CAPABILITY=default.
  static const bool ok = [] {
    const std::string capability = at::get_cpu_capability();
    return (capability == "AVX2" || capability == "AVX512") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return ok;
#else
  return false;
#endif
}

}  // namespace fastrl::cpu::avx2
