// Runtime selection of the AVX2 builds of the CPU kernels (the *_avx2.cpp files, the only ones
// compiled with -mavx2; everything else targets baseline x86-64, so the wheel runs on any CPU).
#pragma once

namespace fastrl::cpu::avx2 {

// Is this build and this CPU able to run the AVX2 (+ FMA, F16C) kernels, and not told
// otherwise by ATEN_CPU_CAPABILITY=default? Decided once.
bool enabled();

}  // namespace fastrl::cpu::avx2
