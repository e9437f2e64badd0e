// MinAtar Freeway, mirroring minatar/environments/freeway.py (package 1.0.15) statement by
// statement. The chicken (column 4) crosses eight lanes of cars upwards, moving at most every
// third frame; +1 when it reaches the top row, which sends it back to the bottom and draws new car
// speeds; a car that meets it sends it back too. The episode ends after 2500 frames (the
// package's time limit: terminate_timer counts down to -1). No difficulty ramp.
#pragma once

#include "core/minatar/game.h"

namespace fastrl::core::minatar {

struct Freeway {
  static constexpr const char* kName = "Freeway";
  static constexpr int kChannels = 7;  // chicken, car, speed1..speed5 (the car's trail)
  static constexpr int kCars = 8;      // car i drives in row i + 1
  static constexpr int32_t kPlayerSpeed = 3, kTimeLimit = 2500;
  // The package's pos, move_timer, terminate_timer and its cars [x, y, timer, speed] as three
  // rows of 8 (y is always i + 1). terminate_timer -1 is the state the episode ended in.
  static constexpr std::array kFields{
      StateField{"pos", 1, 0, 9},           StateField{"move_timer", 1, 0, kPlayerSpeed},
      StateField{"terminate_timer", 1, -1, kTimeLimit},
      StateField{"car_x", kCars, 0, 9},     StateField{"car_timer", kCars, 0, 5},
      StateField{"car_speed", kCars, -5, 5},
  };
  static constexpr int kStateDim = state_dim(kFields);
  enum : int { kPos, kMoveTimer, kTerminateTimer, kCarX, kCarTimer = kCarX + kCars,
               kCarSpeed = kCarTimer + kCars };
  static constexpr std::array<int32_t, 3> kMinimalActions{0, 2, 4};  // n, u, d
  static constexpr int kResetDraws = 2 * kCars, kStepDraws = 2 * kCars;

  // _randomize_cars: randint(1, 6, 8) speeds, then rand(8) directions as
  // np.sign(rand - 0.5). The package's sign is 0 for a draw of exactly 0.5 (probability 2^-53
  // per car): a car of speed 0, whose trail state() cannot draw (it raises, or draws the previous
  // car's). fastrl sends that car right (fixed; docs/envs.md).
  template <typename Rng>
  FASTRL_HD static void randomize_cars(int32_t* s, Rng& rng, bool initialize) {
    int32_t speeds[kCars];
    for (int i = 0; i < kCars; ++i) speeds[i] = draw_randint(rng, 1, 6);
    for (int i = 0; i < kCars; ++i) {
      if (draw_rand(rng) - 0.5 < 0.0) speeds[i] = -speeds[i];
    }
    for (int i = 0; i < kCars; ++i) {
      if (initialize) s[kCarX + i] = 0;
      s[kCarTimer + i] = speeds[i] < 0 ? -speeds[i] : speeds[i];
      s[kCarSpeed + i] = speeds[i];
    }
  }

  // A column in [-1, 10] wrapped onto the grid (the package's `if x < 0: x = 9 elif x > 9: x = 0`),
  // in arithmetic: a car's direction is a coin flip, which branches would mispredict.
  FASTRL_HD static int32_t wrap(int32_t x) { return x + 10 * (x < 0) - 10 * (x > 9); }

  template <typename Rng>
  FASTRL_HD static void reset(int32_t* s, Rng& rng) {
    randomize_cars(s, rng, true);
    s[kPos] = 9;
    s[kMoveTimer] = kPlayerSpeed;
    s[kTerminateTimer] = kTimeLimit;
  }

  template <typename Rng>
  FASTRL_HD static int32_t step(int32_t* s, int32_t a, bool /*ramping*/, Rng& rng, bool& terminal) {
    int32_t r = 0;
    if (a == 2 && s[kMoveTimer] == 0) {  // u
      s[kMoveTimer] = kPlayerSpeed;
      s[kPos] = s[kPos] - 1 < 0 ? 0 : s[kPos] - 1;
    } else if (a == 4 && s[kMoveTimer] == 0) {  // d
      s[kMoveTimer] = kPlayerSpeed;
      s[kPos] = s[kPos] + 1 > 9 ? 9 : s[kPos] + 1;
    }
    if (s[kPos] == 0) {  // win
      r += 1;
      randomize_cars(s, rng, false);
      s[kPos] = 9;
    }
    // Car i, in row i + 1, meets the chicken at x == 4 before or after it moves; only the car of
    // the chicken's row can (the package's loop over every car comes down to it), and the cars
    // move whatever it does. Without branches: which cars move in a frame is hard to predict.
    const int hit_car = s[kPos] - 1;  // -1 or 8 on the bottom row: no car there
    bool hit = hit_car >= 0 && hit_car < kCars && s[kCarX + hit_car] == 4;
    for (int i = 0; i < kCars; ++i) {
      const int32_t x = s[kCarX + i], timer = s[kCarTimer + i], speed = s[kCarSpeed + i];
      const int32_t moved = wrap(x - 1 + 2 * (speed > 0));
      s[kCarTimer + i] = timer == 0 ? (speed < 0 ? -speed : speed) : timer - 1;
      s[kCarX + i] = timer == 0 ? moved : x;
    }
    if (hit_car >= 0 && hit_car < kCars && s[kCarX + hit_car] == 4) hit = true;
    if (hit) s[kPos] = 9;
    s[kMoveTimer] -= s[kMoveTimer] > 0;
    s[kTerminateTimer] -= 1;
    terminal = s[kTerminateTimer] < 0;
    return r;
  }

  // obs [10, 10, 7] zeroed by the caller.
  FASTRL_HD static void observe(const int32_t* s, uint8_t* obs) {
    obs[(s[kPos] * kCols + 4) * kChannels + 0] = 1;
    for (int i = 0; i < kCars; ++i) {
      const int32_t x = s[kCarX + i], speed = s[kCarSpeed + i];
      obs[((i + 1) * kCols + x) * kChannels + 1] = 1;
      const int32_t back_x = wrap(x + 1 - 2 * (speed > 0));
      const int32_t trail = 1 + (speed < 0 ? -speed : speed);  // speed1 .. speed5
      obs[((i + 1) * kCols + back_x) * kChannels + trail] = 1;
    }
  }
};

}  // namespace fastrl::core::minatar
