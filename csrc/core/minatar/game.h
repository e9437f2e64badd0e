// What every MinAtar game header declares, and the random draws games make. MinAtar (Young &
// Tian 2019, the `minatar` package 1.0.15) games are 10x10 grids with C boolean channels; a game
// is a struct (struct Breakout, ...) listed once in core/minatar/registry.h, with:
//   kName                   the package's game name in gymnasium ids: "MinAtar/<kName>-v0/-v1"
//   kChannels               C of the observation [10, 10, C] (the package's state() layout)
//   kStateDim, kFields      the game's int32 state: kFields names its parts (name, count,
//                           bounds) in order, kStateDim is their total count
//   kMinimalActions         the package's minimal action set (the actions of the -v1 id)
//   kResetDraws, kStepDraws the most draws a reset / a step of the game makes
//   reset(s, rng)           a new episode's state s [kStateDim]
//   step(s, action, ramping, rng, terminal) -> reward   one frame of the package's act(), in
//                           place; action is one of the package's six (n, l, u, r, d, f)
//   observe(s, obs)         obs [10, 10, C] of state s, as 0/1 bytes
// A game whose frame is cheaper drawn as it goes (Seaquest's lists) sets kObservesInStep and
// takes step(s, action, ramping, rng, terminal, obs), which also draws the new state into obs
// (zeroed), as observe would.
// Games mirror the package's source statement by statement, including its known bugs (each one
// is named where it happens and listed in docs/envs.md). core/minatar/batch.h runs them over a
// batch, with sticky actions, time limit, autoreset and episode statistics.
#pragma once

#include <array>
#include <cstddef>

#include "core/common.h"
#include "core/rng.h"

namespace fastrl::core::minatar {

constexpr int kRows = 10, kCols = 10;
constexpr int kNumActions = 6;  // the package's action_map: n, l, u, r, d, f

// One named part of a game's state: `count` int32 values, each in [low, high] (set_state checks).
struct StateField {
  const char* name;
  int count;
  int32_t low, high;
};

// Whether Game::step draws the observation too (see above).
template <typename Game, typename = void>
struct ObservesInStep {
  static constexpr bool value = false;
};
template <typename Game>
struct ObservesInStep<Game, decltype(void(Game::kObservesInStep))> {
  static constexpr bool value = Game::kObservesInStep;
};
template <typename Game>
constexpr bool observes_in_step() {
  return ObservesInStep<Game>::value;
}

template <std::size_t N>
constexpr int state_dim(const std::array<StateField, N>& fields) {
  int n = 0;
  for (const StateField& f : fields) n += f.count;
  return n;
}

// The package draws from a numpy RandomState: rand() and randint(low, high). fastrl draws every
// number as one uniform double u from the env's Philox stream (core/rng.h) and maps it:
// rand() = u, randint(low, high) = low + floor(u * (high - low)). The parity tests feed the
// package these same numbers in place of its own.
template <typename Rng>
FASTRL_HD double draw_rand(Rng& rng) {
  return rng.next_double();
}
template <typename Rng>
FASTRL_HD int32_t draw_randint(Rng& rng, int32_t low, int32_t high) {
  return low + static_cast<int32_t>(rng.next_double() * static_cast<double>(high - low));
}

// The draws of one step of one env: Philox counter (2^31 | block, elapsed, resets, env) under
// key = seed. Reset draws use core::ResetStream, whose counters have a block below 2^31, so the
// two never share a counter. A step's stream is fixed by the episode (the env's reset count) and
// the step in it; lengths saturate at 2^31 - 1, so an episode longer than that repeats draws.
class StepStream {
 public:
  FASTRL_HD StepStream(int64_t seed, int64_t env, int64_t resets, int32_t elapsed)
      : k0_(static_cast<uint32_t>(seed)),
        k1_(static_cast<uint32_t>(static_cast<uint64_t>(seed) >> 32)),
        elapsed_(static_cast<uint32_t>(elapsed)),
        resets_(static_cast<uint32_t>(resets)),
        env_(static_cast<uint32_t>(env)) {}
  // The same stream with the words of its first block, counter (2^31, elapsed, resets, env),
  // already computed (the CPU kernel computes them for many envs at once, vectorized).
  FASTRL_HD StepStream(int64_t seed, int64_t env, int64_t resets, int32_t elapsed,
                       const Philox4x32& first)
      : StepStream(seed, env, resets, elapsed) {
    words_ = first;
    block_ = 1;
    used_ = 0;
  }

  FASTRL_HD double next_double() {
    if (used_ == 4) {
      words_ = philox4x32_10({{0x80000000u | block_++, elapsed_, resets_, env_}}, k0_, k1_);
      used_ = 0;
    }
    const double u = words_to_double(words_.v[used_], words_.v[used_ + 1]);
    used_ += 2;
    return u;
  }

 private:
  uint32_t k0_, k1_, elapsed_, resets_, env_;
  uint32_t block_ = 0;
  Philox4x32 words_{};
  int used_ = 4;
};

}  // namespace fastrl::core::minatar
