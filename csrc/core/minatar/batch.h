// The batched MinAtar step shared by the CPU and CUDA kernels: sticky actions and the game's
// frame (the package's Environment.act), time limit, autoreset and episode statistics for env j,
// in place. The same contract as core/envs/batch.h (NEXT_STEP / SAME_STEP autoreset, episode
// statistics, lengths saturating at kMaxElapsed), on an int32 state and byte observations.
//
// Layout: state [N, 1 + Game::kStateDim] int32, one row per env (a game's grid is read and
// written by one thread): column 0 is the last action taken, which the package keeps across
// episodes (Environment.last_action, never reset), then the game's fields. Observations are
// [N, 10, 10, C] bytes (torch bool), the package's state() layout.
#pragma once

#include "core/envs/batch.h"
#include "core/envs/env.h"
#include "core/minatar/game.h"

namespace fastrl::core::minatar {

// The keyword arguments of every game (the package's Environment's), in the order the ops take
// them.
inline constexpr std::array kParams{real_param("sticky_action_prob", 0.1),
                             flag_param("difficulty_ramping", true)};

template <typename Game, typename T>
struct MinAtarBatch : EpisodeBatch<T> {
  static constexpr int kRow = 1 + Game::kStateDim;
  static constexpr int kObs = kRows * kCols * Game::kChannels;
  int32_t* state = nullptr;           // [N, kRow]
  const int64_t* action = nullptr;    // [N] index into action_set
  uint8_t* obs = nullptr;             // [N, 10, 10, C]
  uint8_t* final_obs = nullptr;       // [N, 10, 10, C]; SAME_STEP only
  // The id's actions as the package's: -v1 the game's minimal set, -v0 all six.
  int32_t action_set[kNumActions] = {0, 1, 2, 3, 4, 5};
  int32_t num_actions = kNumActions;
  double sticky_action_prob = 0.1;
  bool ramping = true;

  // Writes env j's observation to out; `zeroed`: its bytes there are zero already (the kernels
  // zero whole outputs at once, faster than env by env).
  FASTRL_HD void observe(int64_t j, uint8_t* out, bool zeroed = false) const {
    uint8_t* o = out + j * kObs;
    if (!zeroed) {
      for (int k = 0; k < kObs; ++k) o[k] = 0;
    }
    Game::observe(state + j * kRow + 1, o);
  }
};

// Starts a new episode of env j from its reset stream (the package's Environment.reset: the
// last action is kept) and writes its observation to obs (whose bytes for env j are zero already
// if obs_zeroed).
template <typename Game, typename T>
FASTRL_HD void reset_env(const MinAtarBatch<Game, T>& b, int64_t j, bool obs_zeroed = false) {
  ResetStream rng(b.seeds[j], b.first_env + j, b.resets[j]);
  Game::reset(b.state + j * b.kRow + 1, rng);
  b.observe(j, b.obs, obs_zeroed);
  b.start_episode(j);
}

// The stream of env j's draws in this step.
template <typename Game, typename T>
FASTRL_HD StepStream step_stream(const MinAtarBatch<Game, T>& b, int64_t j) {
  return StepStream(b.seeds[j], b.first_env + j, b.resets[j], b.elapsed[j]);
}

// One step of env j (the actions are checked by the caller), drawing from rng (env j's
// step_stream), into obs and final_obs whose bytes for env j the caller has zeroed (the kernels
// zero whole outputs at once). rng is taken by reference: a copy of it is read back as 16-byte
// words just after its fields were stored one by one, which stalls the CPU (no store-to-load
// forwarding; 10% of a Seaquest step).
template <typename Game, typename T>
FASTRL_HD void step_env(const MinAtarBatch<Game, T>& b, int64_t j, StepStream& rng) {
  if (!b.same_step && b.autoreset[j]) {
    // NEXT_STEP: an env that ended on the previous step is reset instead; its action is ignored.
    reset_env(b, j, /*obs_zeroed=*/true);
    b.reward[j] = T(0);
    b.terminated[j] = b.truncated[j] = b.done[j] = 0;
    b.final_return[j] = T(0);
    b.final_length[j] = 0;
    return;
  }
  int32_t* s = b.state + j * b.kRow;
  const int32_t elapsed = b.elapsed[j];
  // Environment.act: the sticky draw first, then the game's own draws. Action indices are
  // checked before the step (CPU; GPU with validate=True); an unchecked one out of range (a GPU
  // step with validate=False) is the no-op, rather than a read past action_set.
  const uint64_t index = static_cast<uint64_t>(b.action[j]);
  int32_t a = index < static_cast<uint64_t>(b.num_actions) ? b.action_set[index] : 0;
  a = draw_rand(rng) < b.sticky_action_prob ? s[0] : a;  // a select: a branch mispredicts 1 in 10
  s[0] = a;
  bool term;
  T r;
  if constexpr (observes_in_step<Game>()) {
    r = static_cast<T>(Game::step(s + 1, a, b.ramping, rng, term, b.obs + j * b.kObs));
  } else {
    r = static_cast<T>(Game::step(s + 1, a, b.ramping, rng, term));
  }
  const int32_t length = elapsed + static_cast<int32_t>(elapsed != kMaxElapsed);
  const bool trunc = static_cast<uint32_t>(length) >= b.max_episode_steps;
  const bool done = term || trunc;
  const T ret = b.episode_return[j] + r;
  if constexpr (!observes_in_step<Game>()) b.observe(j, b.obs, /*zeroed=*/true);
  b.reward[j] = r;
  b.terminated[j] = term;
  b.truncated[j] = trunc;
  b.done[j] = done;
  b.elapsed[j] = length;
  b.episode_return[j] = ret;
  b.final_return[j] = done ? ret : T(0);
  b.final_length[j] = done ? length : 0;
  if (b.same_step) {
    b.observe(j, b.final_obs, /*zeroed=*/true);
    if (done) reset_env(b, j);  // clears obs before drawing the new episode's
  } else {
    b.autoreset[j] = done;
  }
}

}  // namespace fastrl::core::minatar
