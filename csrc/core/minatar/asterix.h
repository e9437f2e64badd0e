// MinAtar Asterix, mirroring minatar/environments/asterix.py (package 1.0.15) statement by
// statement. The player moves in four directions; every spawn_speed frames an enemy or (one in
// three) gold enters a free row from a side; entities move every move_speed frames. +1 per gold
// picked up; the episode ends when an enemy meets the player. Difficulty ramp: every
// ramp_interval + 2 frames (the package's ramp_timer counts down to -1) spawns come one frame
// sooner and, every other ramp, entities move one frame sooner.
// Known package behaviour, reproduced: an enemy and the player that swap cells in one frame pass
// through each other; a step that ends the episode still collects gold and moves entities.
#pragma once

#include "core/minatar/game.h"

namespace fastrl::core::minatar {

struct Asterix {
  static constexpr const char* kName = "Asterix";
  static constexpr int kChannels = 4;  // player, enemy, trail, gold
  static constexpr int kSlots = 8;     // entity i is in row i + 1
  static constexpr int32_t kRampInterval = 100, kInitSpawnSpeed = 10, kInitMoveInterval = 5;
  // The package's attributes, and its entities (None or [x, y, lr, is_gold]) as four rows of 8:
  // present, x, lr (moving right), gold; an absent entity's x, lr and gold are 0.
  static constexpr std::array kFields{
      StateField{"player_x", 1, 0, 9},      StateField{"player_y", 1, 1, 8},
      StateField{"spawn_speed", 1, 1, kInitSpawnSpeed},
      StateField{"spawn_timer", 1, 0, kInitSpawnSpeed},
      StateField{"move_speed", 1, 1, kInitMoveInterval},
      StateField{"move_timer", 1, 0, kInitMoveInterval},
      StateField{"ramp_timer", 1, -1, kRampInterval}, StateField{"ramp_index", 1, 0, 9},
      StateField{"entity_present", kSlots, 0, 1},   StateField{"entity_x", kSlots, 0, 9},
      StateField{"entity_lr", kSlots, 0, 1},        StateField{"entity_gold", kSlots, 0, 1},
  };
  static constexpr int kStateDim = state_dim(kFields);
  enum : int { kPlayerX, kPlayerY, kSpawnSpeed, kSpawnTimer, kMoveSpeed, kMoveTimer, kRampTimer,
               kRampIndex, kPresent, kX = kPresent + kSlots, kLr = kX + kSlots,
               kGold = kLr + kSlots };
  static constexpr std::array<int32_t, 5> kMinimalActions{0, 1, 2, 3, 4};  // n, l, u, r, d
  static constexpr int kResetDraws = 0, kStepDraws = 3;

  template <typename Rng>
  FASTRL_HD static void reset(int32_t* s, Rng&) {
    s[kPlayerX] = 5;
    s[kPlayerY] = 5;
    for (int i = 0; i < 4 * kSlots; ++i) s[kPresent + i] = 0;
    s[kSpawnSpeed] = kInitSpawnSpeed;
    s[kSpawnTimer] = kInitSpawnSpeed;
    s[kMoveSpeed] = kInitMoveInterval;
    s[kMoveTimer] = kInitMoveInterval;
    s[kRampTimer] = kRampInterval;
    s[kRampIndex] = 0;
  }

  FASTRL_HD static void remove(int32_t* s, int i) {
    s[kPresent + i] = s[kX + i] = s[kLr + i] = s[kGold + i] = 0;
  }

  // _spawn_entity: draws lr and is_gold, then (if a row is free) the slot among the free ones.
  template <typename Rng>
  FASTRL_HD static void spawn(int32_t* s, Rng& rng) {
    const bool lr = draw_rand(rng) < 1.0 / 2;
    const bool is_gold = draw_rand(rng) < 1.0 / 3;
    int32_t free = 0;
    for (int i = 0; i < kSlots; ++i) free += !s[kPresent + i];
    if (free == 0) return;
    int32_t pick = draw_randint(rng, 0, free);
    for (int i = 0; i < kSlots; ++i) {
      if (!s[kPresent + i] && pick-- == 0) {
        s[kPresent + i] = 1;
        s[kX + i] = lr ? 0 : 9;
        s[kLr + i] = lr;
        s[kGold + i] = is_gold;
        return;
      }
    }
  }

  // The entity of slot i on the player's cell: gold is picked up (+1), an enemy ends the episode.
  // Only the slot of the player's row (player_y - 1) can be on it, so the package's loops over
  // every entity come down to that slot.
  FASTRL_HD static void meet(int32_t* s, int i, int32_t& r, bool& terminal) {
    if (s[kPresent + i] && s[kX + i] == s[kPlayerX]) {
      if (s[kGold + i]) {
        remove(s, i);
        r += 1;
      } else {
        terminal = true;
      }
    }
  }

  template <typename Rng>
  FASTRL_HD static int32_t step(int32_t* s, int32_t a, bool ramping, Rng& rng, bool& terminal) {
    int32_t r = 0;
    terminal = false;
    if (s[kSpawnTimer] == 0) {
      spawn(s, rng);
      s[kSpawnTimer] = s[kSpawnSpeed];
    }
    if (a == 1) {  // l
      s[kPlayerX] = s[kPlayerX] - 1 < 0 ? 0 : s[kPlayerX] - 1;
    } else if (a == 3) {  // r
      s[kPlayerX] = s[kPlayerX] + 1 > 9 ? 9 : s[kPlayerX] + 1;
    } else if (a == 2) {  // u
      s[kPlayerY] = s[kPlayerY] - 1 < 1 ? 1 : s[kPlayerY] - 1;
    } else if (a == 4) {  // d
      s[kPlayerY] = s[kPlayerY] + 1 > 8 ? 8 : s[kPlayerY] + 1;
    }
    const int row = s[kPlayerY] - 1;
    meet(s, row, r, terminal);
    if (s[kMoveTimer] == 0) {
      s[kMoveTimer] = s[kMoveSpeed];
      // Every entity moves; one that leaves the grid is removed (all its fields 0, as an absent
      // one's stay). Without branches: whether a slot is taken is a coin flip per slot.
      for (int i = 0; i < kSlots; ++i) {
        const int32_t x = s[kX + i] - 1 + 2 * s[kLr + i];  // lr is 0 or 1
        const int32_t keep = s[kPresent + i] & (x >= 0) & (x <= 9);
        s[kPresent + i] = keep;
        s[kX + i] = keep ? x : 0;
        s[kLr + i] &= keep;
        s[kGold + i] &= keep;
      }
      meet(s, row, r, terminal);
    }
    s[kSpawnTimer] -= 1;
    s[kMoveTimer] -= 1;
    if (ramping && (s[kSpawnSpeed] > 1 || s[kMoveSpeed] > 1)) {
      if (s[kRampTimer] >= 0) {
        s[kRampTimer] -= 1;
      } else {
        if (s[kMoveSpeed] > 1 && s[kRampIndex] % 2) s[kMoveSpeed] -= 1;
        if (s[kSpawnSpeed] > 1) s[kSpawnSpeed] -= 1;
        s[kRampIndex] += 1;
        s[kRampTimer] = kRampInterval;
      }
    }
    return r;
  }

  // obs [10, 10, 4] zeroed by the caller. Row i + 1's entity, enemy and gold channels are
  // written by slot i alone, so an absent slot (x and lr 0) writes its 0s there instead of
  // branching on presence (a coin flip per slot); a trail off the grid writes its 0 on the grid.
  FASTRL_HD static void observe(const int32_t* s, uint8_t* obs) {
    obs[(s[kPlayerY] * kCols + s[kPlayerX]) * kChannels + 0] = 1;
    for (int i = 0; i < kSlots; ++i) {
      const uint8_t present = static_cast<uint8_t>(s[kPresent + i]);
      uint8_t* row = obs + (i + 1) * kCols * kChannels;
      const int32_t x = s[kX + i];
      row[x * kChannels + (s[kGold + i] ? 3 : 1)] = present;
      const int32_t step = 1 - 2 * s[kLr + i];  // to the trail; in arithmetic, as GCC branches
      const int32_t on_grid = (x + step >= 0) & (x + step <= 9);
      row[(x + on_grid * step) * kChannels + 2] = present & on_grid;
    }
  }
};

}  // namespace fastrl::core::minatar
