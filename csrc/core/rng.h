// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11), so the CPU and CUDA
// kernels draw identical numbers with no stored generator state: a draw is a pure function of
// (key, counter). Environments use key = seed and counter = (block, reset number, env index).
#pragma once

#include "core/common.h"

namespace fastrl::core {

struct Philox4x32 {
  uint32_t v[4];
};

// Philox4x32's multipliers (of words 0 and 2) and key increments (of k0 and k1): the one copy;
// the AVX2 reset draws (cpu/env_kernel.h) and fastrl/envs/rng.py (via _C.philox_constants()) use it.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

FASTRL_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds of Philox4x32 on counter c with key (k0, k1).
FASTRL_HD Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kPhiloxM0, c.v[0], hi0, lo0);
    mulhilo(kPhiloxM1, c.v[2], hi1, lo1);
    c = {{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return c;
}

// philox4x32_10 on four scalar words, in place: what the CPU kernels' `omp simd` loops over envs
// call, since GCC vectorizes the rounds written on scalars but not through the Philox4x32 struct.
FASTRL_HD void philox4x32_10_words(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3,
                                   uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ key0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ key1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    key0 += kPhiloxW0;
    key1 += kPhiloxW1;
  }
}

// A double uniform in [0, 1) from two words: the top 53 bits of (hi << 32 | lo), times 2^-53
// (exactly numpy's formula).
FASTRL_HD double words_to_double(uint32_t hi, uint32_t lo) {
  const uint64_t w = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(w >> 11) * (1.0 / 9007199254740992.0);
}

// numpy's Generator.uniform: low + (high - low) * U.
FASTRL_HD double uniform_from(double u, double low, double high) { return low + (high - low) * u; }

// The Philox counter of block `block` of reset number `resets` of env `env`.
FASTRL_HD Philox4x32 reset_counter(uint32_t block, uint64_t resets, uint32_t env) {
  return {{block, static_cast<uint32_t>(resets), static_cast<uint32_t>(resets >> 32), env}};
}

// The stream of one environment's reset number `resets` under `seed`: uniform doubles with
// 53 random bits each, like numpy's Generator.random (two 32-bit words per double).
class ResetStream {
 public:
  FASTRL_HD ResetStream(int64_t seed, int64_t env, int64_t resets)
      : k0_(static_cast<uint32_t>(seed)),
        k1_(static_cast<uint32_t>(static_cast<uint64_t>(seed) >> 32)),
        resets_(static_cast<uint64_t>(resets)),
        env_(static_cast<uint32_t>(env)) {}

  // Uniform in [0, 1): the top 53 bits of a 64-bit word, times 2^-53 (exactly numpy's formula).
  FASTRL_HD double next_double() {
    if (used_ == 4) refill();
    const double u = words_to_double(words_.v[used_], words_.v[used_ + 1]);
    used_ += 2;
    return u;
  }

  FASTRL_HD double uniform(double low, double high) {
    return uniform_from(next_double(), low, high);
  }

 private:
  FASTRL_HD void refill() {
    words_ = philox4x32_10(reset_counter(block_++, resets_, env_), k0_, k1_);
    used_ = 0;
  }

  uint32_t k0_, k1_;
  uint64_t resets_;
  uint32_t env_;
  uint32_t block_ = 0;
  Philox4x32 words_{};
  int used_ = 4;
};

}  // namespace fastrl::core
