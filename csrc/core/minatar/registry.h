// The native MinAtar games: each one's header and its line in FASTRL_MINATAR_GAMES. This list
// drives the MinAtar ops' dispatch on the id (ops/minatar.h visit_game), the AVX2 build of the
// CPU step (cpu/envs_avx2.cpp) and what _C.minatar_games() tells Python (fastrl.envs.minatar). A new game: its header (the interface
// in core/minatar/game.h), an #include and a line here, and its PyTorch fallback in
// fastrl/envs/minatar/games.py.
#pragma once

#include "core/minatar/asterix.h"
#include "core/minatar/breakout.h"
#include "core/minatar/freeway.h"
#include "core/minatar/seaquest.h"
#include "core/minatar/space_invaders.h"

// X(Game) for every native game, Game a struct in fastrl::core::minatar.
#define FASTRL_MINATAR_GAMES(X) \
  X(Breakout)                \
  X(Freeway)                 \
  X(Asterix)                 \
  X(SpaceInvaders)           \
  X(Seaquest)
