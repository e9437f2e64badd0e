// MinAtar Seaquest, mirroring minatar/environments/seaquest.py (package 1.0.15) statement by
// statement. A two-cell submarine (front and back) moves in four directions and fires bullets
// sideways; enemy fish and enemy subs (which shoot) cross rows 1..8, divers too. +1 per enemy
// shot; divers picked up (up to 6) let the sub surface on the top row for oxygen, which runs
// down by one per frame below it; surfacing with 6 divers pays oxygen * 10 // 200 and empties
// them. The episode ends when an enemy or an enemy bullet meets the sub, oxygen runs out, or the
// sub surfaces with no diver. Each surfacing ramps the difficulty: enemies spawn one frame
// sooner, and every other time move one frame sooner.
// The package keeps its objects in Python lists ([x, y, ...] entries, iterated in reverse,
// removed by value); here each list is a count and its entries in order (a struct of arrays of
// fixed capacity), removed by index. The two agree because no list holds two equal entries (see
// kFields); the capacities hold any reachable state.
// Known package behaviour, reproduced: surfacing with 6 divers leaves diver_count at -1 (it is
// set to 0 and then decremented like any surfacing), after which the sub can surface without
// divers, each time one lower, without ending the episode; an enemy sub shot (or leaving the
// grid) in the frame its shot timer is due still fires; an enemy or enemy bullet and the sub, or
// a bullet and an enemy, that swap cells in one frame pass through each other; a step that ends
// the episode still moves everything and can still pay rewards.
#pragma once

#include "core/minatar/game.h"

namespace fastrl::core::minatar {

struct Seaquest {
  static constexpr const char* kName = "Seaquest";
  // sub_front, sub_back, friendly_bullet, trail, enemy_bullet, enemy_fish, enemy_sub,
  // oxygen_guage, diver_guage, diver
  static constexpr int kChannels = 10;
  static constexpr int32_t kRampInterval = 100, kMaxOxygen = 200, kInitSpawnSpeed = 20,
                           kDiverSpawnSpeed = 30, kInitMoveInterval = 5, kShotCoolDown = 5,
                           kEnemyShotInterval = 10, kDiverMoveInterval = 5;
  // List capacities. At most one enemy spawns per frame and one lives at most 59 frames (it moves
  // every move_speed + 1 <= 6 frames and leaves after 10 moves): 60 fish or subs in a frame. An
  // enemy sub fires every 11 frames and its bullet leaves within 10, so the enemy bullets alive
  // are at most the subs alive in the last 10 frames, plus those fired in this one: 70. Friendly
  // bullets (one per 5 frames, 9 frames of life) and divers (one per 30 frames, 59 frames of
  // life) are at most 3 in a frame. A list that is full drops what would be appended (only a
  // state set by hand can fill one).
  static constexpr int kFBullets = 3, kEBullets = 70, kEnemies = 60, kDivers = 3;
  // diver_count goes below 0 after a surfacing with 6 divers (the package's bug, see above), one
  // lower per surfacing after it; its bound is far below what an episode can reach.
  static constexpr int32_t kMinDiverCount = -(1 << 30);
  // The package's attributes of the same names (sub_or: facing right; surface: on the top row
  // since the last surfacing), then its lists: <list>_count and one field per entry element, the
  // entries in list order and zero past the count. Entries: f_bullets and e_bullets [x, y,
  // moving right], e_fish and divers [x, y, lr, move timer], e_subs [x, y, lr, move timer, shot
  // timer]. No two entries of a list are equal: friendly bullets are 5 frames apart in flight,
  // and each of the others keeps its distance (or its timer's phase) to one spawned before it.
  static constexpr std::array kFields{
      StateField{"oxygen", 1, -1, kMaxOxygen},
      StateField{"diver_count", 1, kMinDiverCount, 6},
      StateField{"sub_x", 1, 0, 9},
      StateField{"sub_y", 1, 0, 8},
      StateField{"sub_or", 1, 0, 1},
      StateField{"e_spawn_speed", 1, 1, kInitSpawnSpeed},
      StateField{"e_spawn_timer", 1, 0, kInitSpawnSpeed},
      StateField{"d_spawn_timer", 1, 0, kDiverSpawnSpeed},
      StateField{"move_speed", 1, 2, kInitMoveInterval},
      StateField{"ramp_index", 1, 0, kInitSpawnSpeed - 1},
      StateField{"shot_timer", 1, 0, kShotCoolDown},
      StateField{"surface", 1, 0, 1},
      StateField{"f_bullets_count", 1, 0, kFBullets},
      StateField{"f_bullets_x", kFBullets, 0, 9},
      StateField{"f_bullets_y", kFBullets, 0, 8},
      StateField{"f_bullets_right", kFBullets, 0, 1},
      StateField{"e_bullets_count", 1, 0, kEBullets},
      StateField{"e_bullets_x", kEBullets, 0, 9},
      StateField{"e_bullets_y", kEBullets, 0, 8},
      StateField{"e_bullets_right", kEBullets, 0, 1},
      StateField{"e_fish_count", 1, 0, kEnemies},
      StateField{"e_fish_x", kEnemies, 0, 9},
      StateField{"e_fish_y", kEnemies, 0, 8},
      StateField{"e_fish_lr", kEnemies, 0, 1},
      StateField{"e_fish_move_timer", kEnemies, 0, kInitMoveInterval},
      StateField{"e_subs_count", 1, 0, kEnemies},
      StateField{"e_subs_x", kEnemies, 0, 9},
      StateField{"e_subs_y", kEnemies, 0, 8},
      StateField{"e_subs_lr", kEnemies, 0, 1},
      StateField{"e_subs_move_timer", kEnemies, 0, kInitMoveInterval},
      StateField{"e_subs_shot_timer", kEnemies, 0, kEnemyShotInterval},
      StateField{"divers_count", 1, 0, kDivers},
      StateField{"divers_x", kDivers, 0, 9},
      StateField{"divers_y", kDivers, 0, 8},
      StateField{"divers_lr", kDivers, 0, 1},
      StateField{"divers_move_timer", kDivers, 0, kDiverMoveInterval},
  };
  static constexpr int kStateDim = state_dim(kFields);
  enum : int {
    kOxygen, kDiverCount, kSubX, kSubY, kSubOr, kESpawnSpeed, kESpawnTimer, kDSpawnTimer,
    kMoveSpeed, kRampIndex, kShotTimer, kSurface,
    kFBulletList,
    kEBulletList = kFBulletList + 1 + 3 * kFBullets,
    kFishList = kEBulletList + 1 + 3 * kEBullets,
    kSubList = kFishList + 1 + 4 * kEnemies,
    kDiverList = kSubList + 1 + 5 * kEnemies,
  };
  static_assert(kDiverList + 1 + 4 * kDivers == kStateDim);
  static constexpr std::array<int32_t, 6> kMinimalActions{0, 1, 2, 3, 4, 5};  // all six
  static constexpr int kResetDraws = 0, kStepDraws = 5;  // _spawn_enemy 3, _spawn_diver 2

  // One of the package's lists at s: its count, then kAttrs arrays of kCap (entry i's element k
  // at 1 + k * kCap + i). T is const int32_t for reading only.
  template <int kCap, int kAttrs, typename T = int32_t>
  struct List {
    T* s;
    FASTRL_HD T& n() const { return s[0]; }
    FASTRL_HD T& at(int i, int k) const { return s[1 + k * kCap + i]; }
    FASTRL_HD void append(const int32_t (&v)[kAttrs]) const { append_if(true, v); }
    // append(v) if `add`, without branching on it (the sub's shots: a coin flip per step under
    // random actions): the slot is rewritten with its own values when nothing is appended.
    FASTRL_HD void append_if(bool add, const int32_t (&v)[kAttrs]) const {
      const bool room = n() < kCap;
      const int slot = room ? n() : kCap - 1;
      add = add & room;
      for (int k = 0; k < kAttrs; ++k) at(slot, k) = add ? v[k] : at(slot, k);
      n() += add;
    }
    // list.remove of entry i: the later ones move up; the freed slot is zeroed.
    FASTRL_HD void remove(int i) const {
      for (int j = i; j + 1 < n(); ++j) {
        for (int k = 0; k < kAttrs; ++k) at(j, k) = at(j + 1, k);
      }
      --n();
      for (int k = 0; k < kAttrs; ++k) at(n(), k) = 0;
    }
    // The first entry at (x, y) (the package's `for x in list: if ...[0:2] == x[0:2]`), or -1.
    FASTRL_HD int find(int32_t x, int32_t y) const {
      for (int j = 0; j < n(); ++j) {
        if (at(j, 0) == x && at(j, 1) == y) return j;
      }
      return -1;
    }
  };
  using Bullets = List<kFBullets, 3>;
  using EBullets = List<kEBullets, 3>;
  using Fish = List<kEnemies, 4>;
  using Subs = List<kEnemies, 5>;
  using Divers = List<kDivers, 4>;
  enum : int { kX, kY, kLr, kMoveTimer, kShotTimerSub };

  // Empties a list: its live entries zeroed (those past the count are zero already, which
  // fastrl.envs checks of a state set by hand). Cheaper than zeroing all 3.2 KB of the row.
  template <int kCap, int kAttrs>
  FASTRL_HD static void clear(int32_t* list) {
    const List<kCap, kAttrs> l{list};
    for (int k = 0; k < kAttrs; ++k) {
      for (int i = 0; i < l.n(); ++i) l.at(i, k) = 0;
    }
    l.n() = 0;
  }

  template <typename Rng>
  FASTRL_HD static void reset(int32_t* s, Rng&) {
    for (int k = 0; k < kFBulletList; ++k) s[k] = 0;
    clear<kFBullets, 3>(s + kFBulletList);
    clear<kEBullets, 3>(s + kEBulletList);
    clear<kEnemies, 4>(s + kFishList);
    clear<kEnemies, 5>(s + kSubList);
    clear<kDivers, 4>(s + kDiverList);
    s[kOxygen] = kMaxOxygen;
    s[kDiverCount] = 0;
    s[kSubX] = 5;
    s[kSubY] = 0;
    s[kSubOr] = 0;
    s[kESpawnSpeed] = kInitSpawnSpeed;
    s[kESpawnTimer] = kInitSpawnSpeed;
    s[kDSpawnTimer] = kDiverSpawnSpeed;
    s[kMoveSpeed] = kInitMoveInterval;
    s[kRampIndex] = 0;
    s[kShotTimer] = 0;
    s[kSurface] = 1;
  }

  // The step of an entry moving right (lr 1) or left (lr 0), in arithmetic: GCC branches on
  // `lr ? 1 : -1`, a coin flip per entry.
  FASTRL_HD static int32_t dx(int32_t lr) { return 2 * lr - 1; }
  FASTRL_HD static int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }

  // Python's a // b for b > 0 (oxygen may be -1 in the frame it runs out).
  FASTRL_HD static int32_t floor_div(int32_t a, int32_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

  // _spawn_enemy: three draws; no spawn in a row with an enemy going the other way.
  template <typename Rng>
  FASTRL_HD static void spawn_enemy(int32_t* s, Rng& rng) {
    const int32_t lr = draw_rand(rng) < 1.0 / 2;
    const bool is_sub = draw_rand(rng) < 1.0 / 3;
    const int32_t x = lr ? 0 : 9;
    const int32_t y = draw_randint(rng, 1, 9);
    const Subs subs{s + kSubList};
    const Fish fish{s + kFishList};
    for (int j = 0; j < subs.n(); ++j) {
      if (subs.at(j, kY) == y && subs.at(j, kLr) != lr) return;
    }
    for (int j = 0; j < fish.n(); ++j) {
      if (fish.at(j, kY) == y && fish.at(j, kLr) != lr) return;
    }
    if (is_sub) {
      subs.append({x, y, lr, s[kMoveSpeed], kEnemyShotInterval});
    } else {
      fish.append({x, y, lr, s[kMoveSpeed]});
    }
  }

  // _spawn_diver: two draws.
  template <typename Rng>
  FASTRL_HD static void spawn_diver(int32_t* s, Rng& rng) {
    const int32_t lr = draw_rand(rng) < 1.0 / 2;
    const int32_t x = lr ? 0 : 9;
    const int32_t y = draw_randint(rng, 1, 9);
    Divers{s + kDiverList}.append({x, y, lr, kDiverMoveInterval});
  }

  // _surface: the reward of a surfacing, oxygen refilled, the difficulty ramp.
  FASTRL_HD static int32_t surface(int32_t* s, bool ramping) {
    s[kSurface] = 1;
    int32_t r = 0;
    if (s[kDiverCount] == 6) {
      s[kDiverCount] = 0;
      r = floor_div(s[kOxygen] * 10, kMaxOxygen);
    }
    s[kOxygen] = kMaxOxygen;
    s[kDiverCount] -= 1;  // after 6 divers too: the package's bug, -1
    if (ramping && (s[kESpawnSpeed] > 1 || s[kMoveSpeed] > 2)) {
      if (s[kMoveSpeed] > 2 && s[kRampIndex] % 2) s[kMoveSpeed] -= 1;
      if (s[kESpawnSpeed] > 1) s[kESpawnSpeed] -= 1;
      s[kRampIndex] += 1;
    }
    return r;
  }

  // The frame of the package's act(), and its state() of the new state, into obs (zeroed): each
  // enemy, enemy bullet and diver is drawn where its loop leaves it (no later loop moves or
  // removes one), which spares a second loop over every list and its mispredicted exit, env
  // after env. Friendly bullets can still be shot down after their loop: they are drawn last.
  static constexpr bool kObservesInStep = true;
  template <typename Rng>
  FASTRL_HD static int32_t step(int32_t* s, int32_t a, bool ramping, Rng& rng, bool& terminal, uint8_t* obs) {
    int32_t r = 0;
    terminal = false;
    const Bullets f_bullets{s + kFBulletList};
    const EBullets e_bullets{s + kEBulletList};
    const Fish e_fish{s + kFishList};
    const Subs e_subs{s + kSubList};
    const Divers divers{s + kDiverList};
    int32_t& sub_x = s[kSubX];
    int32_t& sub_y = s[kSubY];

    if (s[kESpawnTimer] == 0) {
      spawn_enemy(s, rng);
      s[kESpawnTimer] = s[kESpawnSpeed];
    }
    if (s[kDSpawnTimer] == 0) {
      spawn_diver(s, rng);
      s[kDSpawnTimer] = kDiverSpawnSpeed;
    }

    // The action (n, l, u, r, d, f), in arithmetic and selects: a branch on it mispredicts
    // under random actions (a fifth of a step's mispredictions). l and r face the sub; f fires
    // when the cooldown is over (and a full list drops the shot, the cooldown starts anyway).
    const int32_t mx = (a == 3) - (a == 1), my = (a == 4) - (a == 2);
    sub_x = clamp(sub_x + mx, 0, 9);
    sub_y = clamp(sub_y + my, 0, 8);
    s[kSubOr] = (a == 3) | (s[kSubOr] & (a != 1));
    const bool fires = (a == 5) & (s[kShotTimer] == 0);
    f_bullets.append_if(fires, {sub_x, sub_y, s[kSubOr]});
    s[kShotTimer] = fires ? kShotCoolDown : s[kShotTimer];

    // Friendly bullets, in reverse: each one hits the first fish, else the first sub, on its cell.
    for (int i = f_bullets.n() - 1; i >= 0; --i) {
      int32_t& x = f_bullets.at(i, kX);
      x += dx(f_bullets.at(i, kLr));
      if (x < 0 || x > 9) {
        f_bullets.remove(i);
        continue;
      }
      const int32_t y = f_bullets.at(i, kY);
      const int fish = e_fish.find(x, y);
      if (fish >= 0) {
        e_fish.remove(fish);
        f_bullets.remove(i);
        r += 1;
        continue;
      }
      const int sub = e_subs.find(x, y);
      if (sub >= 0) {
        e_subs.remove(sub);
        f_bullets.remove(i);
        r += 1;
      }
    }

    // Divers, in reverse: picked up on the sub's cell while there is room for them.
    for (int i = divers.n() - 1; i >= 0; --i) {
      const bool on_sub = divers.at(i, kX) == sub_x && divers.at(i, kY) == sub_y;
      if (on_sub && s[kDiverCount] < 6) {
        divers.remove(i);
        s[kDiverCount] += 1;
      } else if (divers.at(i, kMoveTimer) == 0) {
        divers.at(i, kMoveTimer) = kDiverMoveInterval;
        int32_t& x = divers.at(i, kX);
        x += dx(divers.at(i, kLr));
        if (x < 0 || x > 9) {
          divers.remove(i);
        } else if (x == sub_x && divers.at(i, kY) == sub_y && s[kDiverCount] < 6) {
          divers.remove(i);
          s[kDiverCount] += 1;
        } else {
          draw_entity(obs, divers, i, 9);
        }
      } else {
        divers.at(i, kMoveTimer) -= 1;
        draw_entity(obs, divers, i, 9);
      }
    }

    // Enemy subs, in reverse. The package goes on with a sub it has removed (shot, or off the
    // grid): its shot timer still fires, so it is worked on as a copy.
    for (int i = e_subs.n() - 1; i >= 0; --i) {
      int32_t sub[5];
      for (int k = 0; k < 5; ++k) sub[k] = e_subs.at(i, k);
      terminal |= (sub[kX] == sub_x) & (sub[kY] == sub_y);
      // It moves when its timer is due (as the fish below, without branching on that).
      const bool moves = sub[kMoveTimer] == 0;
      sub[kMoveTimer] = moves ? s[kMoveSpeed] : sub[kMoveTimer] - 1;
      sub[kX] += moves * dx(sub[kLr]);
      const bool hit = moves & (sub[kX] == sub_x) & (sub[kY] == sub_y);
      terminal |= hit;
      bool removed = moves && (sub[kX] < 0 || sub[kX] > 9);
      if (moves && !removed && !hit && f_bullets.n() > 0) {
        const int bullet = f_bullets.find(sub[kX], sub[kY]);
        if (bullet >= 0) {
          removed = true;
          f_bullets.remove(bullet);
          r += 1;
        }
      }
      const bool fires = sub[kShotTimerSub] == 0;
      sub[kShotTimerSub] = fires ? kEnemyShotInterval : sub[kShotTimerSub] - 1;
      if (fires) e_bullets.append({sub[kX], sub[kY], sub[kLr]});  // from x -1 or 10 too (then dropped below)
      if (removed) {
        e_subs.remove(i);
      } else {
        for (int k = 0; k < 5; ++k) e_subs.at(i, k) = sub[k];
        draw_entity(obs, e_subs, i, 6);
      }
    }

    // Enemy bullets, in reverse: they end the episode on the sub's cell, before or after moving.
    // (A cell off the grid is never the sub's, so the checks after a move need not wait for the
    // removal, and the rare removals are the only branches: the rest is a coin flip per entry.)
    for (int i = e_bullets.n() - 1; i >= 0; --i) {
      int32_t& x = e_bullets.at(i, kX);
      const int32_t y = e_bullets.at(i, kY);
      terminal |= (x == sub_x) & (y == sub_y);
      x += dx(e_bullets.at(i, kLr));
      terminal |= (x == sub_x) & (y == sub_y);
      if (x < 0 || x > 9) {
        e_bullets.remove(i);
      } else {
        draw(obs, y, x, 4);
      }
    }

    // Enemy fish, in reverse: they move when their timer is due.
    for (int i = e_fish.n() - 1; i >= 0; --i) {
      int32_t& x = e_fish.at(i, kX);
      const int32_t y = e_fish.at(i, kY);
      terminal |= (x == sub_x) & (y == sub_y);
      const int32_t timer = e_fish.at(i, kMoveTimer);
      const bool moves = timer == 0;
      e_fish.at(i, kMoveTimer) = moves ? s[kMoveSpeed] : timer - 1;
      x += moves * dx(e_fish.at(i, kLr));
      const bool hit = moves & (x == sub_x) & (y == sub_y);
      terminal |= hit;
      if (moves && (x < 0 || x > 9)) {
        e_fish.remove(i);
        continue;
      }
      if (moves && !hit && f_bullets.n() > 0) {
        const int bullet = f_bullets.find(x, y);
        if (bullet >= 0) {
          e_fish.remove(i);
          f_bullets.remove(bullet);
          r += 1;
          continue;
        }
      }
      draw_entity(obs, e_fish, i, 5);
    }

    s[kESpawnTimer] -= s[kESpawnTimer] > 0;
    s[kDSpawnTimer] -= s[kDSpawnTimer] > 0;
    s[kShotTimer] -= s[kShotTimer] > 0;
    if (s[kOxygen] <= 0) terminal = true;
    // Below the top row oxygen runs down; arriving on it surfaces (rare: the only branch).
    const bool below = sub_y > 0;
    s[kOxygen] -= below;
    if ((sub_y | s[kSurface]) == 0) {  // one branch: `!below && ...` branches on below first
      if (s[kDiverCount] == 0) {
        terminal = true;
      } else {
        r += surface(s, ramping);
      }
    }
    s[kSurface] = below ? 0 : s[kSurface];
    draw_list<kFBullets, 3>(obs, s + kFBulletList, 2, false);
    draw_sub_and_gauges(s, obs);
    return r;
  }

  FASTRL_HD static void draw(uint8_t* obs, int32_t y, int32_t x, int c) { obs[(y * kCols + x) * kChannels + c] = 1; }

  // Entry i of a list in channel c, and its trail (the cell behind it, if on the grid).
  template <typename List>
  FASTRL_HD static void draw_entity(uint8_t* obs, const List& l, int i, int c) {
    // Every field read before the first store: a byte store may alias the state (uint8_t), so a
    // read after it waits for it (2% of a step).
    const int32_t x = l.at(i, kX), y = l.at(i, kY), back_x = x - dx(l.at(i, kLr));
    draw(obs, y, x, c);
    // The trail or-ed in at a cell on the grid (a branch on it would be a coin flip).
    obs[(y * kCols + clamp(back_x, 0, 9)) * kChannels + 3] |= (back_x >= 0) & (back_x <= 9);
  }

  // The entries of a list in channel c, with their trail unless c is a bullet's.
  template <int kCap, int kAttrs>
  FASTRL_HD static void draw_list(uint8_t* obs, const int32_t* list, int c, bool with_trail) {
    const List<kCap, kAttrs, const int32_t> l{list};
    for (int i = 0; i < l.n(); ++i) {
      if (with_trail) {
        draw_entity(obs, l, i, c);
      } else {
        draw(obs, l.at(i, kY), l.at(i, kX), c);
      }
    }
  }

  // The sub, and the gauges: cells [0, oxygen * 10 // 200) and [9 - diver_count, 9) of the
  // bottom row (none when diver_count <= 0). Each gauge cell is written, 1 or 0 (their channels
  // are theirs alone), as a loop of variable length mispredicts its exit. The sub's back is on
  // the grid (fastrl.envs refuses a sub facing the side it is on: unreachable, and the package
  // would draw it off the grid).
  FASTRL_HD static void draw_sub_and_gauges(const int32_t* s, uint8_t* obs) {
    const int32_t sub_x = s[kSubX], sub_y = s[kSubY], back_x = sub_x - dx(s[kSubOr]);
    const int32_t oxygen = s[kOxygen] > 0 ? s[kOxygen] : 0;
    const int32_t oxygen_cells = oxygen * 10 / kMaxOxygen, divers_from = 9 - s[kDiverCount];
    draw(obs, sub_y, sub_x, 0);
    draw(obs, sub_y, back_x, 1);
    uint8_t* bottom = obs + 9 * kCols * kChannels;
    for (int32_t x = 0; x < kCols; ++x) {
      bottom[x * kChannels + 7] = x < oxygen_cells;
      bottom[x * kChannels + 8] = x >= divers_from && x < 9;
    }
  }

  // obs [10, 10, 10] of state s, zeroed by the caller (a reset's; a step draws its own).
  FASTRL_HD static void observe(const int32_t* s, uint8_t* obs) {
    draw_sub_and_gauges(s, obs);
    draw_list<kFBullets, 3>(obs, s + kFBulletList, 2, false);
    draw_list<kEBullets, 3>(obs, s + kEBulletList, 4, false);
    draw_list<kEnemies, 4>(obs, s + kFishList, 5, true);
    draw_list<kEnemies, 5>(obs, s + kSubList, 6, true);
    draw_list<kDivers, 4>(obs, s + kDiverList, 9, true);
  }
};

}  // namespace fastrl::core::minatar
