// The batched environment step shared by the CPU and CUDA kernels: physics (of any env in
// core/envs/registry.h) + reward + termination + truncation (gymnasium's TimeLimit) + autoreset + episode
// statistics for env j, reading and writing the batch in place.
//
// Layout: state is SoA [kStateDim, N] so that neighbouring envs are neighbouring in memory
// (vector lanes on the CPU, coalesced loads on the GPU); per-env counters are [N]; outputs are
// [N, kObsDim] and [N].
//
// A step is two passes. advance() runs the physics for every env without branches, so the CPU
// loop vectorizes. It returns whether env j must then be reset by autoreset(), which draws from
// the env's Philox stream and is rare (once per episode):
//   NEXT_STEP (gymnasium's default): an env that ended on the previous step is reset instead of
//     stepped: reset observation, reward 0, not terminated, not truncated; its action is ignored.
//   SAME_STEP: an env that ends is reset in the same step; obs is the reset observation and
//     final_obs the one the step reached (for every env: it equals obs where nothing ended).
#pragma once

#include "core/common.h"
#include "core/rng.h"

namespace fastrl::core {

// Episode lengths are int32 and saturate at kMaxElapsed rather than overflow (an env without a
// time limit can run 2^31 steps: about 10 hours at 4096 CartPoles on one core). The time limit is
// compared as uint32, and kNoTimeLimit is above every length.
constexpr int32_t kMaxElapsed = 2147483647;
constexpr uint32_t kNoTimeLimit = 0x80000000u;

// What every batched env family keeps per env and writes at each step besides its state and
// observations (EnvBatch below; core/minatar/batch.h's MinAtarBatch): the episode counters, the
// env's RNG stream, the step outputs and the autoreset settings.
template <typename T>
struct EpisodeBatch {
  int64_t n = 0;                      // number of envs N
  int32_t* elapsed = nullptr;         // [N] steps in the current episode (TimeLimit, length)
  T* episode_return = nullptr;        // [N] return of the current episode so far
  // Flags are torch bools (one byte, 0 or 1) read and written as uint8_t: GCC does not vectorize
  // loops that load or store `bool`.
  uint8_t* autoreset = nullptr;       // [N] NEXT_STEP: the next step resets this env
  int64_t* resets = nullptr;          // [N] resets so far: the counter of the env's RNG stream
  const int64_t* seeds = nullptr;     // [N] key of the env's RNG stream
  T* reward = nullptr;                // [N]
  uint8_t* terminated = nullptr;      // [N]
  uint8_t* truncated = nullptr;       // [N]
  uint8_t* done = nullptr;            // [N] terminated | truncated
  T* final_return = nullptr;          // [N] return of the episode that ended at this step, else 0
  int32_t* final_length = nullptr;    // [N] its length, else 0
  uint32_t max_episode_steps = kNoTimeLimit;  // in [1, kMaxElapsed], or kNoTimeLimit
  bool same_step = false;
  // Global index of env 0: a shard of a bigger batch (one rank's under torchrun) draws env j's
  // resets from stream (seed, first_env + j), so the envs do not depend on how the batch is split.
  int64_t first_env = 0;

  // The counters of a new episode of env j (its state and observation are the family's).
  FASTRL_HD void start_episode(int64_t j) const {
    // Wraps (in uint64, like the Philox counter it feeds) instead of overflowing; never reached.
    resets[j] = static_cast<int64_t>(static_cast<uint64_t>(resets[j]) + 1u);
    elapsed[j] = 0;
    episode_return[j] = T(0);
    autoreset[j] = 0;
  }
};

template <typename Env, typename T>
struct EnvBatch : EpisodeBatch<T> {
  using Action = typename Env::Action;
  T* state = nullptr;                 // [S, N]
  const Action* action = nullptr;     // [N] (every env here has a single action dimension)
  T* obs = nullptr;                   // [N, O]
  T* final_obs = nullptr;             // [N, O]; SAME_STEP only
  typename Env::Params params{};

  FASTRL_HD void load(int64_t j, T* s) const {
    for (int k = 0; k < Env::kStateDim; ++k) s[k] = state[k * this->n + j];
  }
  FASTRL_HD void store(int64_t j, const T* s) const {
    for (int k = 0; k < Env::kStateDim; ++k) state[k * this->n + j] = s[k];
  }
  FASTRL_HD void observe(const T* s, T* out, int64_t j) const {
    T o[Env::kObsDim];
    Env::observe(params, s, o);
    for (int k = 0; k < Env::kObsDim; ++k) out[j * Env::kObsDim + k] = o[k];
  }
};

// Draws env j's next initial state from rng (its reset stream) and starts a new episode; writes
// its observation to obs.
template <typename Env, typename T, typename Rng>
FASTRL_HD void reset_env_with(const EnvBatch<Env, T>& b, int64_t j, Rng& rng) {
  T s[Env::kStateDim];
  Env::reset(b.params, rng, s);
  b.store(j, s);
  b.observe(s, b.obs, j);
  b.start_episode(j);
}

template <typename Env, typename T>
FASTRL_HD void reset_env(const EnvBatch<Env, T>& b, int64_t j) {
  ResetStream rng(b.seeds[j], b.first_env + j, b.resets[j]);
  reset_env_with(b, j, rng);
}

// Pass 1, branch-free: one step of env j. Returns whether autoreset() must run for it (0 or 1).
// kSameStep == b.same_step, as a template argument so the CPU loop has no branch on it.
template <bool kSameStep, typename Env, typename T>
FASTRL_HD uint8_t advance(const EnvBatch<Env, T>& b, int64_t j) {
  T s[Env::kStateDim];
  b.load(j, s);
  const int32_t elapsed = b.elapsed[j];
  T r;
  bool term;
  Env::step(b.params, s, b.action[j], elapsed, r, term);
  const int32_t length = elapsed + static_cast<int32_t>(elapsed != kMaxElapsed);
  const bool trunc = static_cast<uint32_t>(length) >= b.max_episode_steps;
  const bool done = term | trunc;
  const T ret = b.episode_return[j] + r;
  // NEXT_STEP: an env flagged on the previous step resets instead: its outputs are those of the
  // reset step (no reward, nothing ends), written here as selects so that autoreset() only
  // writes the new episode's state.
  const bool skip = !kSameStep && b.autoreset[j];
  const bool ended = done & !skip;
  b.store(j, s);
  b.observe(s, b.obs, j);
  if (kSameStep) b.observe(s, b.final_obs, j);
  b.reward[j] = skip ? T(0) : r;
  b.terminated[j] = static_cast<uint8_t>(term & !skip);
  b.truncated[j] = static_cast<uint8_t>(trunc & !skip);
  b.done[j] = static_cast<uint8_t>(ended);
  b.elapsed[j] = length;
  b.episode_return[j] = ret;
  b.final_return[j] = ended ? ret : T(0);
  b.final_length[j] = ended ? length : 0;
  b.autoreset[j] = static_cast<uint8_t>(!kSameStep & ended);
  return static_cast<uint8_t>(kSameStep ? done : skip);
}

// Pass 2, for the envs advance() flagged (which has written their step outputs already); rng is
// env j's stream for its next reset.
template <typename Env, typename T, typename Rng>
FASTRL_HD void autoreset_with(const EnvBatch<Env, T>& b, int64_t j, Rng& rng) {
  reset_env_with(b, j, rng);
}

template <typename Env, typename T>
FASTRL_HD void autoreset(const EnvBatch<Env, T>& b, int64_t j) {
  ResetStream rng(b.seeds[j], b.first_env + j, b.resets[j]);
  autoreset_with(b, j, rng);
}

}  // namespace fastrl::core
