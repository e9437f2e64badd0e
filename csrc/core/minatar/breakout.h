// MinAtar Breakout, mirroring minatar/environments/breakout.py (package 1.0.15) statement by
// statement. The paddle on the bottom row bounces a ball that moves along diagonals; +1 per
// brick broken; three new rows of bricks when the ball reaches the bottom row with none left;
// the episode ends when the ball reaches the bottom row past the paddle. No random draws in a
// step, one per reset (the side the ball starts from); no difficulty ramp.
#pragma once

#include "core/minatar/game.h"

namespace fastrl::core::minatar {

struct Breakout {
  static constexpr const char* kName = "Breakout";
  static constexpr int kChannels = 4;  // paddle, ball, trail, brick
  // The package's attributes of the same names; ball_dir 0..3: up-left, up-right, down-right,
  // down-left. ball_y 9 is the state an episode ended in, which is never stepped (fastrl.envs
  // refuses to set it, with a brick on the bottom row, as the package's next step would fail).
  static constexpr std::array kFields{
      StateField{"ball_x", 1, 0, 9},  StateField{"ball_y", 1, 0, 9},
      StateField{"ball_dir", 1, 0, 3},
      StateField{"pos", 1, 0, 9},     StateField{"strike", 1, 0, 1}, StateField{"last_x", 1, 0, 9},
      StateField{"last_y", 1, 0, 8},  StateField{"brick_map", kRows * kCols, 0, 1},
  };
  static constexpr int kStateDim = state_dim(kFields);
  enum : int { kBallX, kBallY, kBallDir, kPos, kStrike, kLastX, kLastY, kBricks };
  static constexpr std::array<int32_t, 3> kMinimalActions{0, 1, 3};  // n, l, r
  static constexpr int kResetDraws = 1, kStepDraws = 0;

  template <typename Rng>
  FASTRL_HD static void reset(int32_t* s, Rng& rng) {
    s[kBallY] = 3;
    const bool right = draw_randint(rng, 0, 2) == 1;  // ball_start
    s[kBallX] = right ? 9 : 0;
    s[kBallDir] = right ? 3 : 2;
    s[kPos] = 4;
    for (int k = 0; k < kRows * kCols; ++k) s[kBricks + k] = k >= 10 && k < 40;  // rows 1..3
    s[kStrike] = 0;
    s[kLastX] = s[kBallX];
    s[kLastY] = s[kBallY];
  }

  template <typename Rng>
  FASTRL_HD static int32_t step(int32_t* s, int32_t a, bool /*ramping*/, Rng& /*rng*/,
                                bool& terminal) {
    int32_t r = 0;
    terminal = false;
    int32_t* brick_map = s + kBricks;
    if (a == 1) {  // l
      s[kPos] = s[kPos] - 1 < 0 ? 0 : s[kPos] - 1;
    } else if (a == 3) {  // r
      s[kPos] = s[kPos] + 1 > 9 ? 9 : s[kPos] + 1;
    }
    s[kLastX] = s[kBallX];
    s[kLastY] = s[kBallY];
    int32_t dir = s[kBallDir];
    int32_t new_x = s[kBallX] + (dir == 1 || dir == 2 ? 1 : -1);
    int32_t new_y = s[kBallY] + (dir >= 2 ? 1 : -1);
    bool strike_toggle = false;
    if (new_x < 0 || new_x > 9) {
      new_x = new_x < 0 ? 0 : 9;
      dir ^= 1;  // [1, 0, 3, 2][dir]
    }
    if (new_y < 0) {
      new_y = 0;
      dir = 3 - dir;  // [3, 2, 1, 0][dir]
    } else if (brick_map[new_y * kCols + new_x] == 1) {
      strike_toggle = true;
      // The package's strike flag: a ball that enters a brick on the step right after breaking
      // one neither breaks it nor bounces, and goes through it (reproduced).
      if (!s[kStrike]) {
        r += 1;
        s[kStrike] = 1;
        brick_map[new_y * kCols + new_x] = 0;
        new_y = s[kLastY];
        dir = 3 - dir;
      }
    } else if (new_y == 9) {
      int32_t bricks = 0;
      for (int k = 0; k < kRows * kCols; ++k) bricks += brick_map[k] != 0;
      if (bricks == 0) {
        for (int k = 10; k < 40; ++k) brick_map[k] = 1;
      }
      if (s[kBallX] == s[kPos]) {
        dir = 3 - dir;
        new_y = s[kLastY];
      } else if (new_x == s[kPos]) {
        dir ^= 2;  // [2, 3, 0, 1][dir]
        new_y = s[kLastY];
      } else {
        terminal = true;
      }
    }
    if (!strike_toggle) s[kStrike] = 0;
    s[kBallX] = new_x;
    s[kBallY] = new_y;
    s[kBallDir] = dir;
    return r;
  }

  // obs [10, 10, 4] zeroed by the caller (4-byte aligned). The bricks go in first, a whole cell
  // (its four channels) per 32-bit store, which vectorizes; one byte per cell was most of a step.
  FASTRL_HD static void observe(const int32_t* s, uint8_t* obs) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "channel 3 is a cell word's top byte");
    uint32_t* cells = reinterpret_cast<uint32_t*>(obs);
    for (int k = 0; k < kRows * kCols; ++k) cells[k] = static_cast<uint32_t>(s[kBricks + k] != 0) << 24;
    obs[(s[kBallY] * kCols + s[kBallX]) * kChannels + 1] = 1;
    obs[(9 * kCols + s[kPos]) * kChannels + 0] = 1;
    obs[(s[kLastY] * kCols + s[kLastX]) * kChannels + 2] = 1;
  }
};

}  // namespace fastrl::core::minatar
