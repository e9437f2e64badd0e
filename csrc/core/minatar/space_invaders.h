// MinAtar SpaceInvaders, mirroring minatar/environments/space_invaders.py (package 1.0.15)
// statement by statement. The cannon on the bottom row fires upwards (every shot_cool_down
// frames); a block of aliens moves sideways and one row down (reversing) when it reaches a side,
// faster as fewer are left, and the nearest alien shoots every enemy_shot_interval frames. +1 per
// alien hit; a new wave when all are gone, one frame faster each wave with ramping (down to 6).
// The episode ends when an alien or an enemy bullet reaches the cannon, or the aliens step down
// from the bottom row. No random draws.
// Known package behaviour, reproduced: aliens stepping down from the bottom row wrap to the top
// row (np.roll) in the step that ends the episode; a bullet and an alien that swap cells in one
// frame pass through each other.
#pragma once

#include "core/minatar/game.h"

namespace fastrl::core::minatar {

struct SpaceInvaders {
  static constexpr const char* kName = "SpaceInvaders";
  static constexpr int kChannels = 6;  // cannon, alien, alien_left, alien_right, f/e bullets
  static constexpr int32_t kShotCoolDown = 5, kEnemyMoveInterval = 12, kEnemyShotInterval = 10;
  static constexpr int kCells = kRows * kCols;
  // The package's attributes (alien_dir -1 or 1; maps as 0/1 cells, row-major).
  static constexpr std::array kFields{
      StateField{"pos", 1, 0, 9},
      StateField{"alien_dir", 1, -1, 1},
      StateField{"enemy_move_interval", 1, 6, kEnemyMoveInterval},
      StateField{"alien_move_timer", 1, 0, kEnemyMoveInterval},
      StateField{"alien_shot_timer", 1, 0, kEnemyShotInterval},
      StateField{"ramp_index", 1, 0, kEnemyMoveInterval - 6},
      StateField{"shot_timer", 1, 0, kShotCoolDown},
      StateField{"alien_map", kCells, 0, 1},
      StateField{"f_bullet_map", kCells, 0, 1},
      StateField{"e_bullet_map", kCells, 0, 1},
  };
  static constexpr int kStateDim = state_dim(kFields);
  enum : int { kPos, kAlienDir, kInterval, kMoveTimer, kShotTimerAliens, kRampIndex, kShotTimer,
               kAliens, kFBullets = kAliens + kCells, kEBullets = kFBullets + kCells };
  static constexpr std::array<int32_t, 4> kMinimalActions{0, 1, 3, 5};  // n, l, r, f
  static constexpr int kResetDraws = 0, kStepDraws = 0;

  FASTRL_HD static void new_wave(int32_t* aliens) {
    for (int r = 0; r < 4; ++r) {
      for (int c = 2; c < 8; ++c) aliens[r * kCols + c] = 1;  // alien_map[0:4, 2:8] = 1
    }
  }

  template <typename Rng>
  FASTRL_HD static void reset(int32_t* s, Rng&) {
    for (int k = 0; k < kStateDim; ++k) s[k] = 0;
    s[kPos] = 5;
    new_wave(s + kAliens);
    s[kAlienDir] = -1;
    s[kInterval] = kEnemyMoveInterval;
    s[kMoveTimer] = kEnemyMoveInterval;
    s[kShotTimerAliens] = kEnemyShotInterval;
  }

  FASTRL_HD static int32_t count(const int32_t* map, int first, int step, int n) {
    int32_t total = 0;
    for (int k = 0; k < n; ++k) total += map[first + k * step] != 0;
    return total;
  }

  // _nearest_alien: the columns by distance from pos (the left one first on ties: Python's stable
  // sort), the first with an alien, and its lowest alien. False when there is none (the package
  // would fail; a step always starts with aliens).
  FASTRL_HD static bool nearest_alien(const int32_t* aliens, int32_t pos, int32_t& row,
                                      int32_t& col) {
    for (int dist = 0; dist < kCols; ++dist) {
      for (int side = -1; side <= 1; side += 2) {
        col = pos + side * dist;
        if ((dist == 0 && side == 1) || col < 0 || col > 9) continue;
        row = -1;
        for (int r = 0; r < kRows; ++r) {
          if (aliens[r * kCols + col] == 1) row = r;
        }
        if (row >= 0) return true;
      }
    }
    return false;
  }

  template <typename Rng>
  FASTRL_HD static int32_t step(int32_t* s, int32_t a, bool ramping, Rng&, bool& terminal) {
    int32_t r = 0;
    terminal = false;
    int32_t* aliens = s + kAliens;
    int32_t* f = s + kFBullets;
    int32_t* e = s + kEBullets;
    int32_t& pos = s[kPos];
    if (a == 5 && s[kShotTimer] == 0) {  // f
      f[9 * kCols + pos] = 1;
      s[kShotTimer] = kShotCoolDown;
    } else if (a == 1) {  // l
      pos = pos - 1 < 0 ? 0 : pos - 1;
    } else if (a == 3) {  // r
      pos = pos + 1 > 9 ? 9 : pos + 1;
    }
    // Friendly bullets up one row (np.roll -1, the bottom row cleared), enemy ones down one.
    for (int k = 0; k < kCells - kCols; ++k) f[k] = f[k + kCols];
    for (int c = 0; c < kCols; ++c) f[9 * kCols + c] = 0;
    for (int k = kCells - 1; k >= kCols; --k) e[k] = e[k - kCols];
    for (int c = 0; c < kCols; ++c) e[c] = 0;
    if (e[9 * kCols + pos]) terminal = true;
    if (aliens[9 * kCols + pos]) terminal = true;
    if (s[kMoveTimer] == 0) {
      const int32_t n = count(aliens, 0, 1, kCells);
      s[kMoveTimer] = n < s[kInterval] ? n : s[kInterval];
      int32_t& dir = s[kAlienDir];
      int32_t old[kCells];
      for (int k = 0; k < kCells; ++k) old[k] = aliens[k];
      if ((count(aliens, 0, kCols, kRows) > 0 && dir < 0) ||
          (count(aliens, 9, kCols, kRows) > 0 && dir > 0)) {
        dir = -dir;
        if (count(aliens, 9 * kCols, 1, kCols) > 0) terminal = true;
        for (int k = 0; k < kCells; ++k) aliens[k] = old[(k + kCells - kCols) % kCells];  // down
      } else {
        for (int k = 0; k < kCells; ++k) {  // sideways by dir (np.roll along the columns)
          const int c = k % kCols;
          aliens[k] = old[k - c + (c - dir + kCols) % kCols];
        }
      }
      if (aliens[9 * kCols + pos]) terminal = true;
    }
    if (s[kShotTimerAliens] == 0) {
      s[kShotTimerAliens] = kEnemyShotInterval;
      int32_t row, col;
      if (nearest_alien(aliens, pos, row, col)) e[row * kCols + col] = 1;
    }
    // kill_locations: an alien and a bullet on a cell (both 1) both go. In arithmetic, which
    // vectorizes; a branch per cell mispredicted on the aliens' pattern.
    for (int k = 0; k < kCells; ++k) {
      const int32_t kill = aliens[k] & f[k];
      r += kill;
      aliens[k] ^= kill;
      f[k] ^= kill;
    }
    s[kShotTimer] -= s[kShotTimer] > 0;
    s[kMoveTimer] -= 1;
    s[kShotTimerAliens] -= 1;
    if (count(aliens, 0, 1, kCells) == 0) {
      if (s[kInterval] > 6 && ramping) {
        s[kInterval] -= 1;
        s[kRampIndex] += 1;
      }
      new_wave(aliens);
    }
    return r;
  }

  // obs [10, 10, 6] zeroed by the caller.
  FASTRL_HD static void observe(const int32_t* s, uint8_t* obs) {
    obs[(9 * kCols + s[kPos]) * kChannels + 0] = 1;
    const int dir_channel = s[kAlienDir] < 0 ? 2 : 3;
    for (int k = 0; k < kCells; ++k) {
      const bool alien = s[kAliens + k] != 0;
      obs[k * kChannels + 1] = alien;
      obs[k * kChannels + dir_channel] = alien;
      obs[k * kChannels + 4] = s[kFBullets + k] != 0;
      obs[k * kChannels + 5] = s[kEBullets + k] != 0;
    }
  }
};

}  // namespace fastrl::core::minatar
