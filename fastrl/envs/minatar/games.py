"""The MinAtar games in PyTorch: the fallback of csrc/core/minatar/<game>.h, on a batch.

Each game mirrors the ``minatar`` package's source (minatar/environments/<game>.py, 1.0.15) like
its C++ header does, with every branch turned into a ``torch.where`` over the batch. A game's
state is int64 ``[N, S]`` (the header's int32 fields, in order; the env's state row without its
last-action column); draws are float64 ``[N]`` tensors uniform in [0, 1), mapped as the C++ does
(core/minatar/game.h): ``rand() = u``, ``randint(low, high) = low + floor(u * (high - low))``.
"""

from __future__ import annotations

import dataclasses

import torch

ROWS = COLS = 10


@dataclasses.dataclass(frozen=True)
class Field:
    """``count`` int32 values of a game's state, each in [low, high] (core::minatar::StateField)."""

    name: str
    count: int
    low: int
    high: int


def randint(u: torch.Tensor, low, high) -> torch.Tensor:
    """numpy's ``randint(low, high)`` from the uniform ``u``, as fastrl draws it."""
    return low + (u * (high - low)).long()


class Game:
    """What a game's header declares (core/minatar/game.h), and its PyTorch step. Each game
    defines, on int64 states ``[N, S]``:

    - ``reset(n, device, u)``: ``n`` new episodes' states from ``reset_draws`` uniforms ``[n]``;
    - ``step(s, a, ramping, u)``: one frame of every env (the package's act()) with the
      package's actions ``a`` (0..5) and ``step_draws`` uniforms ``u``, updating ``s`` in place;
      returns the reward (int64 ``[N]``) and terminal (bool ``[N]``);
    - ``observe(s)``: bool ``[N, 10, 10, C]``, the package's state();
    - ``unsteppable(s)``: which states (within their fields' bounds) a step cannot start from,
      as a bool ``[N]`` (the state an episode ended in, which only an autoreset follows), and
      why (``set_state`` refuses them).
    """

    name: str
    channels: int
    fields: tuple[Field, ...]
    minimal_actions: tuple[int, ...]
    reset_draws: int
    step_draws: int

    @classmethod
    def state_dim(cls) -> int:
        return sum(f.count for f in cls.fields)


class Breakout(Game):
    """minatar/environments/breakout.py; csrc/core/minatar/breakout.h says what it does."""

    name = "Breakout"
    channels = 4  # paddle, ball, trail, brick
    fields = (
        Field("ball_x", 1, 0, 9), Field("ball_y", 1, 0, 9), Field("ball_dir", 1, 0, 3), Field("pos", 1, 0, 9),
        Field("strike", 1, 0, 1), Field("last_x", 1, 0, 9), Field("last_y", 1, 0, 8),
        Field("brick_map", ROWS * COLS, 0, 1),
    )  # fmt: skip
    minimal_actions = (0, 1, 3)  # n, l, r
    reset_draws, step_draws = 1, 0
    BALL_X, BALL_Y, BALL_DIR, POS, STRIKE, LAST_X, LAST_Y, BRICKS = range(8)

    def reset(self, n, device, u):
        right = randint(u[0], 0, 2) == 1  # ball_start
        s = torch.zeros(n, self.state_dim(), dtype=torch.int64, device=device)
        s[:, self.BALL_X] = torch.where(right, 9, 0)
        s[:, self.BALL_Y] = 3
        s[:, self.BALL_DIR] = torch.where(right, 3, 2)
        s[:, self.POS] = 4
        s[:, self.LAST_X] = s[:, self.BALL_X]
        s[:, self.LAST_Y] = 3
        s[:, self.BRICKS + 10 : self.BRICKS + 40] = 1  # rows 1..3
        return s

    def step(self, s, a, ramping, u):
        ball_x, ball_y, d, pos, strike = (s[:, k].clone() for k in range(5))
        bricks = s[:, self.BRICKS :]  # a view: broken bricks are written in place
        pos = torch.where(a == 1, (pos - 1).clamp(min=0), torch.where(a == 3, (pos + 1).clamp(max=9), pos))
        last_x, last_y = ball_x, ball_y
        new_x = ball_x + torch.where((d == 1) | (d == 2), 1, -1)
        new_y = ball_y + torch.where(d >= 2, 1, -1)
        wall = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        d = torch.where(wall, d ^ 1, d)
        top = new_y < 0
        new_y = torch.where(top, 0, new_y)
        d = torch.where(top, 3 - d, d)
        # Clamped for the envs ended on the previous step (ball on the bottom row): NEXT_STEP
        # computes their step too, and then drops it.
        cell = (new_y.clamp(max=9) * COLS + new_x).unsqueeze(1)
        hit = ~top & (bricks.gather(1, cell).squeeze(1) == 1)
        # After a strike a ball goes through the next brick it enters (the package's strike flag).
        breaks = hit & (strike == 0)
        bricks.scatter_(1, cell, torch.where(breaks.unsqueeze(1), 0, bricks.gather(1, cell)))
        new_y = torch.where(breaks, last_y, new_y)
        d = torch.where(breaks, 3 - d, d)
        bottom = ~top & ~hit & (new_y == 9)
        refill = bottom & ((bricks != 0).sum(1) == 0)
        bricks[:, 10:40] = torch.where(refill.unsqueeze(1), 1, bricks[:, 10:40])
        paddle = bottom & (ball_x == pos)  # the ball's column before it moved
        side = bottom & ~paddle & (new_x == pos)
        d = torch.where(paddle, 3 - d, torch.where(side, d ^ 2, d))
        new_y = torch.where(paddle | side, last_y, new_y)
        terminal = bottom & ~paddle & ~side
        for k, v in enumerate((new_x, new_y, d, pos, hit.long(), last_x, last_y)):
            s[:, k] = v
        return breaks.long(), terminal

    def observe(self, s):
        n = s.shape[0]
        obs = torch.zeros(n, ROWS * COLS, self.channels, dtype=torch.bool, device=s.device)
        env = torch.arange(n, device=s.device)
        obs[env, s[:, self.BALL_Y] * COLS + s[:, self.BALL_X], 1] = True
        obs[env, 9 * COLS + s[:, self.POS], 0] = True
        obs[env, s[:, self.LAST_Y] * COLS + s[:, self.LAST_X], 2] = True
        obs[:, :, 3] = s[:, self.BRICKS :] != 0
        return obs.view(n, ROWS, COLS, self.channels)

    def unsteppable(self, s):
        # The ball on the bottom row has ended the episode; a brick there would let a ball after a
        # strike stay on it without ending it. Their next step would leave the grid (an IndexError
        # in the package).
        bottom = (s[:, self.BALL_Y] == 9) | (s[:, self.BRICKS + 90 :] != 0).any(1)
        return bottom, "Breakout's ball_y must be below 9 and its bottom row free of bricks (ball_y 9 has ended)"


class Freeway(Game):
    """minatar/environments/freeway.py; csrc/core/minatar/freeway.h says what it does."""

    name = "Freeway"
    channels = 7  # chicken, car, speed1..speed5
    CARS, PLAYER_SPEED, TIME_LIMIT = 8, 3, 2500
    fields = (
        Field("pos", 1, 0, 9), Field("move_timer", 1, 0, PLAYER_SPEED), Field("terminate_timer", 1, -1, TIME_LIMIT),
        Field("car_x", CARS, 0, 9), Field("car_timer", CARS, 0, 5), Field("car_speed", CARS, -5, 5),
    )  # fmt: skip
    minimal_actions = (0, 2, 4)  # n, u, d
    reset_draws = step_draws = 2 * CARS
    POS, MOVE_TIMER, TERMINATE_TIMER, CAR_X = range(4)
    CAR_TIMER, CAR_SPEED = CAR_X + CARS, CAR_X + 2 * CARS

    def _speeds(self, u):
        """_randomize_cars' speeds: randint(1, 6, 8), signed by rand(8) < 0.5 (freeway.h says
        why a draw of exactly 0.5 goes right)."""
        speed = torch.stack([randint(x, 1, 6) for x in u[: self.CARS]], 1)
        left = torch.stack(u[self.CARS : 2 * self.CARS], 1) - 0.5 < 0
        return torch.where(left, -speed, speed)

    def reset(self, n, device, u):
        speed = self._speeds(u)
        s = torch.zeros(n, self.state_dim(), dtype=torch.int64, device=device)
        s[:, self.POS] = 9
        s[:, self.MOVE_TIMER] = self.PLAYER_SPEED
        s[:, self.TERMINATE_TIMER] = self.TIME_LIMIT
        s[:, self.CAR_TIMER : self.CAR_SPEED] = speed.abs()
        s[:, self.CAR_SPEED :] = speed
        return s

    def step(self, s, a, ramping, u):
        pos, move_timer = s[:, self.POS].clone(), s[:, self.MOVE_TIMER].clone()
        moves = move_timer == 0
        up, down = (a == 2) & moves, (a == 4) & moves
        move_timer = torch.where(up | down, self.PLAYER_SPEED, move_timer)
        pos = torch.where(up, (pos - 1).clamp(min=0), torch.where(down, (pos + 1).clamp(max=9), pos))
        win = pos == 0
        speed = torch.where(win.unsqueeze(1), self._speeds(u), s[:, self.CAR_SPEED :])
        timer = torch.where(win.unsqueeze(1), speed.abs(), s[:, self.CAR_TIMER : self.CAR_SPEED])
        pos = torch.where(win, 9, pos)
        x = s[:, self.CAR_X : self.CAR_TIMER].clone()
        for i in range(self.CARS):  # in order: each car may send the chicken back
            pos = torch.where((x[:, i] == 4) & (pos == i + 1), 9, pos)
            moving = timer[:, i] == 0
            moved = (x[:, i] + torch.where(speed[:, i] > 0, 1, -1)).remainder(10)  # wraps 0..9
            x[:, i] = torch.where(moving, moved, x[:, i])
            timer[:, i] = torch.where(moving, speed[:, i].abs(), timer[:, i] - 1)
            pos = torch.where(moving & (x[:, i] == 4) & (pos == i + 1), 9, pos)
        s[:, self.POS] = pos
        s[:, self.MOVE_TIMER] = move_timer - (move_timer > 0).long()
        s[:, self.TERMINATE_TIMER] -= 1
        s[:, self.CAR_X : self.CAR_TIMER] = x
        s[:, self.CAR_TIMER : self.CAR_SPEED] = timer
        s[:, self.CAR_SPEED :] = speed
        return win.long(), s[:, self.TERMINATE_TIMER] < 0

    def observe(self, s):
        n = s.shape[0]
        obs = torch.zeros(n, ROWS, COLS, self.channels, dtype=torch.bool, device=s.device)
        env = torch.arange(n, device=s.device)
        obs[env, s[:, self.POS], 4, 0] = True
        x, speed = s[:, self.CAR_X : self.CAR_TIMER], s[:, self.CAR_SPEED :]
        back_x = (x - torch.where(speed > 0, 1, -1)).remainder(10)
        for i in range(self.CARS):
            obs[env, i + 1, x[:, i], 1] = True
            obs[env, i + 1, back_x[:, i], 1 + speed[:, i].abs()] = True
        return obs

    def unsteppable(self, s):
        # The episode ended at terminate_timer -1; a car of speed 0 has no trail to draw.
        bad = (s[:, self.TERMINATE_TIMER] < 0) | (s[:, self.CAR_SPEED :] == 0).any(1)
        return bad, "Freeway's terminate_timer must be >= 0 (-1 has ended) and its car speeds nonzero"


class Asterix(Game):
    """minatar/environments/asterix.py; csrc/core/minatar/asterix.h says what it does."""

    name = "Asterix"
    channels = 4  # player, enemy, trail, gold
    SLOTS, RAMP_INTERVAL, SPAWN_SPEED, MOVE_INTERVAL = 8, 100, 10, 5
    fields = (
        Field("player_x", 1, 0, 9), Field("player_y", 1, 1, 8), Field("spawn_speed", 1, 1, SPAWN_SPEED),
        Field("spawn_timer", 1, 0, SPAWN_SPEED), Field("move_speed", 1, 1, MOVE_INTERVAL),
        Field("move_timer", 1, 0, MOVE_INTERVAL), Field("ramp_timer", 1, -1, RAMP_INTERVAL),
        Field("ramp_index", 1, 0, 9), Field("entity_present", SLOTS, 0, 1), Field("entity_x", SLOTS, 0, 9),
        Field("entity_lr", SLOTS, 0, 1), Field("entity_gold", SLOTS, 0, 1),
    )  # fmt: skip
    minimal_actions = (0, 1, 2, 3, 4)  # n, l, u, r, d
    reset_draws, step_draws = 0, 3
    PLAYER_X, PLAYER_Y, SPAWN_SPEED_, SPAWN_TIMER, MOVE_SPEED, MOVE_TIMER, RAMP_TIMER, RAMP_INDEX = range(8)
    PRESENT = 8

    def reset(self, n, device, u):
        s = torch.zeros(n, self.state_dim(), dtype=torch.int64, device=device)
        s[:, self.PLAYER_X] = s[:, self.PLAYER_Y] = 5
        s[:, self.SPAWN_SPEED_] = s[:, self.SPAWN_TIMER] = self.SPAWN_SPEED
        s[:, self.MOVE_SPEED] = s[:, self.MOVE_TIMER] = self.MOVE_INTERVAL
        s[:, self.RAMP_TIMER] = self.RAMP_INTERVAL
        return s

    def step(self, s, a, ramping, u):
        k = self.SLOTS
        ent = s[:, self.PRESENT :].view(-1, 4, k)  # present, x, lr, gold: a view, written in place
        present, x, lr, gold = ent.unbind(1)
        slot = torch.arange(k, device=s.device)
        # Spawn (_spawn_entity): lr, is_gold, then the slot among the free ones.
        spawning = s[:, self.SPAWN_TIMER] == 0
        new_lr, new_gold = u[0] < 1 / 2, u[1] < 1 / 3
        free = present == 0
        pick = randint(u[2], 0, free.sum(1))  # randint(len(slot_options))
        chosen = free & (free.long().cumsum(1) - 1 == pick.unsqueeze(1)) & spawning.unsqueeze(1)
        present[:] = torch.where(chosen, 1, present)
        x[:] = torch.where(chosen, torch.where(new_lr, 0, 9).unsqueeze(1), x)
        lr[:] = torch.where(chosen, new_lr.long().unsqueeze(1), lr)
        gold[:] = torch.where(chosen, new_gold.long().unsqueeze(1), gold)
        s[:, self.SPAWN_TIMER] = torch.where(spawning, s[:, self.SPAWN_SPEED_], s[:, self.SPAWN_TIMER])
        px, py = s[:, self.PLAYER_X], s[:, self.PLAYER_Y]
        px[:] = torch.where(a == 1, (px - 1).clamp(min=0), torch.where(a == 3, (px + 1).clamp(max=9), px))
        py[:] = torch.where(a == 2, (py - 1).clamp(min=1), torch.where(a == 4, (py + 1).clamp(max=8), py))
        row = slot + 1

        def meet(where):
            """Entities on the player's cell (in ``where``): gold is picked up, enemies end it."""
            hit = where & (present == 1) & (x == px.unsqueeze(1)) & (row == py.unsqueeze(1))
            picked = hit & (gold == 1)
            ent.masked_fill_(picked.unsqueeze(1), 0)
            return picked.sum(1), (hit & ~picked).any(1)

        reward, terminal = meet(torch.ones_like(present, dtype=torch.bool))
        move = s[:, self.MOVE_TIMER] == 0
        s[:, self.MOVE_TIMER] = torch.where(move, s[:, self.MOVE_SPEED], s[:, self.MOVE_TIMER])
        moving = move.unsqueeze(1) & (present == 1)
        x[:] = torch.where(moving, x + torch.where(lr == 1, 1, -1), x)
        ent.masked_fill_((moving & ((x < 0) | (x > 9))).unsqueeze(1), 0)  # off the grid
        r2, t2 = meet(moving)
        reward, terminal = reward + r2, terminal | t2
        s[:, self.SPAWN_TIMER] -= 1
        s[:, self.MOVE_TIMER] -= 1
        if ramping:
            ramps = (s[:, self.SPAWN_SPEED_] > 1) | (s[:, self.MOVE_SPEED] > 1)
            waits = ramps & (s[:, self.RAMP_TIMER] >= 0)
            now = ramps & ~waits
            s[:, self.RAMP_TIMER] -= waits.long()
            s[:, self.MOVE_SPEED] -= (now & (s[:, self.MOVE_SPEED] > 1) & (s[:, self.RAMP_INDEX] % 2 == 1)).long()
            s[:, self.SPAWN_SPEED_] -= (now & (s[:, self.SPAWN_SPEED_] > 1)).long()
            s[:, self.RAMP_INDEX] += now.long()
            s[:, self.RAMP_TIMER] = torch.where(now, self.RAMP_INTERVAL, s[:, self.RAMP_TIMER])
        return reward, terminal

    def observe(self, s):
        n, k = s.shape[0], self.SLOTS
        obs = torch.zeros(n, ROWS, COLS, self.channels, dtype=torch.bool, device=s.device)
        env = torch.arange(n, device=s.device)
        obs[env, s[:, self.PLAYER_Y], s[:, self.PLAYER_X], 0] = True
        present, x, lr, gold = s[:, self.PRESENT :].view(-1, 4, k).unbind(1)
        back_x = x + torch.where(lr == 1, -1, 1)
        for i in range(k):
            on = present[:, i] == 1
            obs[env[on], i + 1, x[on, i], torch.where(gold[on, i] == 1, 3, 1)] = True
            trail = on & (back_x[:, i] >= 0) & (back_x[:, i] <= 9)
            obs[env[trail], i + 1, back_x[trail, i], 2] = True
        return obs

    def unsteppable(self, s):
        present, rest = s[:, self.PRESENT : self.PRESENT + self.SLOTS], s[:, self.PRESENT + self.SLOTS :]
        bad = ((rest.view(-1, 3, self.SLOTS) != 0) & (present == 0).unsqueeze(1)).flatten(1).any(1)
        return bad, "Asterix's absent entities must have entity_x, entity_lr and entity_gold 0"


class SpaceInvaders(Game):
    """minatar/environments/space_invaders.py; csrc/core/minatar/space_invaders.h says what it does."""

    name = "SpaceInvaders"
    channels = 6  # cannon, alien, alien_left, alien_right, friendly_bullet, enemy_bullet
    SHOT_COOL_DOWN, MOVE_INTERVAL, SHOT_INTERVAL, CELLS = 5, 12, 10, ROWS * COLS
    fields = (
        Field("pos", 1, 0, 9), Field("alien_dir", 1, -1, 1), Field("enemy_move_interval", 1, 6, MOVE_INTERVAL),
        Field("alien_move_timer", 1, 0, MOVE_INTERVAL), Field("alien_shot_timer", 1, 0, SHOT_INTERVAL),
        Field("ramp_index", 1, 0, MOVE_INTERVAL - 6), Field("shot_timer", 1, 0, SHOT_COOL_DOWN),
        Field("alien_map", CELLS, 0, 1), Field("f_bullet_map", CELLS, 0, 1), Field("e_bullet_map", CELLS, 0, 1),
    )  # fmt: skip
    minimal_actions = (0, 1, 3, 5)  # n, l, r, f
    reset_draws = step_draws = 0
    POS, DIR, INTERVAL, MOVE_TIMER, ALIEN_SHOT_TIMER, RAMP_INDEX, SHOT_TIMER, ALIENS = range(8)

    def _maps(self, s):
        """alien_map, f_bullet_map, e_bullet_map as views ``[N, 10, 10]`` of ``s``."""
        return s[:, self.ALIENS :].view(-1, 3, ROWS, COLS).unbind(1)

    def reset(self, n, device, u):
        s = torch.zeros(n, self.state_dim(), dtype=torch.int64, device=device)
        s[:, self.POS] = 5
        self._maps(s)[0][:, 0:4, 2:8] = 1
        s[:, self.DIR] = -1
        s[:, self.INTERVAL] = s[:, self.MOVE_TIMER] = self.MOVE_INTERVAL
        s[:, self.ALIEN_SHOT_TIMER] = self.SHOT_INTERVAL
        return s

    def step(self, s, a, ramping, u):
        aliens, f, e = self._maps(s)
        env = torch.arange(s.shape[0], device=s.device)
        pos, shot_timer = s[:, self.POS].clone(), s[:, self.SHOT_TIMER].clone()
        fire = (a == 5) & (shot_timer == 0)
        f[env, 9, pos] = torch.where(fire, 1, f[env, 9, pos])
        s[:, self.SHOT_TIMER] = torch.where(fire, self.SHOT_COOL_DOWN, shot_timer)
        left, right = ~fire & (a == 1), ~fire & (a == 3)
        pos = torch.where(left, (pos - 1).clamp(min=0), torch.where(right, (pos + 1).clamp(max=9), pos))
        s[:, self.POS] = pos
        f[:] = torch.cat([f[:, 1:], torch.zeros_like(f[:, :1])], 1)  # np.roll -1, bottom row cleared
        e[:] = torch.cat([torch.zeros_like(e[:, :1]), e[:, :-1]], 1)
        terminal = (e[env, 9, pos] != 0) | (aliens[env, 9, pos] != 0)
        move = s[:, self.MOVE_TIMER] == 0
        count = (aliens != 0).sum((1, 2))
        s[:, self.MOVE_TIMER] = torch.where(move, torch.minimum(count, s[:, self.INTERVAL]), s[:, self.MOVE_TIMER])
        d = s[:, self.DIR]
        edge = move & (((aliens[:, :, 0].sum(1) > 0) & (d < 0)) | ((aliens[:, :, 9].sum(1) > 0) & (d > 0)))
        terminal |= edge & (aliens[:, 9, :].sum(1) > 0)
        down = aliens.roll(1, 1)
        side = torch.where((d > 0).view(-1, 1, 1), aliens.roll(1, 2), aliens.roll(-1, 2))
        aliens[:] = torch.where(edge.view(-1, 1, 1), down, torch.where(move.view(-1, 1, 1), side, aliens))
        s[:, self.DIR] = torch.where(edge, -d, d)
        terminal |= move & (aliens[env, 9, pos] != 0)
        shoots = s[:, self.ALIEN_SHOT_TIMER] == 0
        s[:, self.ALIEN_SHOT_TIMER] = torch.where(shoots, self.SHOT_INTERVAL, s[:, self.ALIEN_SHOT_TIMER])
        # _nearest_alien: the column with an alien nearest pos (the left one on ties), its lowest alien.
        col = torch.arange(COLS, device=s.device)
        key = (col - pos.unsqueeze(1)).abs() * 2 + (col > pos.unsqueeze(1)).long()
        has = aliens.sum(1) > 0  # [N, 10] columns
        c = torch.where(has, key, 100).argmin(1)
        rows = torch.arange(ROWS, device=s.device)
        r = torch.where(aliens[env, :, c] == 1, rows, -1).amax(1)
        shot = shoots & has.any(1)
        e[env, r.clamp(min=0), c] = torch.where(shot, 1, e[env, r.clamp(min=0), c])
        kill = (aliens != 0) & (aliens == f)
        reward = kill.flatten(1).sum(1)
        aliens.masked_fill_(kill, 0)
        f.masked_fill_(kill, 0)
        s[:, self.SHOT_TIMER] -= (s[:, self.SHOT_TIMER] > 0).long()
        s[:, self.MOVE_TIMER] -= 1
        s[:, self.ALIEN_SHOT_TIMER] -= 1
        cleared = (aliens != 0).flatten(1).sum(1) == 0
        ramp = cleared & (s[:, self.INTERVAL] > 6) & ramping
        s[:, self.INTERVAL] -= ramp.long()
        s[:, self.RAMP_INDEX] += ramp.long()
        aliens[:, 0:4, 2:8] = torch.where(cleared.view(-1, 1, 1), 1, aliens[:, 0:4, 2:8])
        return reward, terminal

    def observe(self, s):
        n = s.shape[0]
        aliens, f, e = (m != 0 for m in self._maps(s))
        obs = torch.zeros(n, ROWS, COLS, self.channels, dtype=torch.bool, device=s.device)
        obs[torch.arange(n, device=s.device), 9, s[:, self.POS], 0] = True
        left = (s[:, self.DIR] < 0).view(-1, 1, 1)
        obs[..., 1], obs[..., 2], obs[..., 3] = aliens, aliens & left, aliens & ~left
        obs[..., 4], obs[..., 5] = f, e
        return obs

    def unsteppable(self, s):
        # No aliens: the package's _nearest_alien returns None and its step fails (a wave is always
        # refilled within the step that clears it).
        bad = (s[:, self.DIR] == 0) | (s[:, self.ALIENS : self.ALIENS + self.CELLS] == 0).all(1)
        return bad, "SpaceInvaders' alien_dir must be -1 or 1 and its alien_map not empty"


class _Entries:
    """One of Seaquest's lists in a state batch (csrc/core/minatar/seaquest.h, Seaquest::List):
    ``count`` and ``v`` ``[N, attrs, cap]`` are views of the state. A step marks removed entries
    ``dead`` (a list only ever removes the entry its loop is at, so the order of the others
    holds) and ``compact`` drops them at its end, keeping the order."""

    def __init__(self, s: torch.Tensor, offset: int, cap: int, attrs: int):
        self.cap = cap
        self.count = s[:, offset]
        self.v = s[:, offset + 1 : offset + 1 + cap * attrs].view(-1, attrs, cap)
        self.dead = torch.zeros(s.shape[0], cap, dtype=torch.bool, device=s.device)
        self.env = torch.arange(s.shape[0], device=s.device)

    def alive(self) -> torch.Tensor:
        return (torch.arange(self.cap, device=self.v.device) < self.count.unsqueeze(1)) & ~self.dead

    def slots(self):
        """The slots a loop over the list visits, last first (the package's ``reversed``)."""
        return reversed(range(int(self.count.max()) if self.count.numel() else 0))

    def append(self, mask: torch.Tensor, values) -> None:
        """``list += [values]`` where ``mask``; a full list drops it (as the C++)."""
        mask = mask & (self.count < self.cap)
        i = self.count.clamp(max=self.cap - 1)
        for k, value in enumerate(values):
            self.v[self.env, k, i] = torch.where(mask, value, self.v[self.env, k, i])
        self.count += mask.long()

    def find(self, x: torch.Tensor, y: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Marks dead the first live entry at (x, y), where ``where``; returns where one was."""
        match = self.alive() & (self.v[:, 0] == x.unsqueeze(1)) & (self.v[:, 1] == y.unsqueeze(1))
        hit = where & match.any(1)
        self.dead[self.env[hit], match.long().argmax(1)[hit]] = True
        return hit

    def compact(self) -> None:
        keep = self.alive()
        order = torch.sort((~keep).long(), dim=1, stable=True).indices
        kept = keep.gather(1, order).unsqueeze(1)
        self.v.copy_(torch.where(kept, self.v.gather(2, order.unsqueeze(1).expand_as(self.v)), 0))
        self.count.copy_(keep.sum(1))
        self.dead.zero_()


class Seaquest(Game):
    """minatar/environments/seaquest.py; csrc/core/minatar/seaquest.h says what it does. Each
    list's loop runs over its slots, last first, on the whole batch."""

    name = "Seaquest"
    # sub_front, sub_back, friendly_bullet, trail, enemy_bullet, enemy_fish, enemy_sub, oxygen_guage,
    # diver_guage, diver
    channels = 10
    MAX_OXYGEN, SPAWN_SPEED, DIVER_SPAWN_SPEED, MOVE_INTERVAL = 200, 20, 30, 5
    SHOT_COOL_DOWN, ENEMY_SHOT_INTERVAL, DIVER_MOVE_INTERVAL = 5, 10, 5
    MIN_DIVER_COUNT = -(2**30)
    # name, capacity, entry elements (with their bounds), channel, drawn with a trail
    LISTS = (
        ("f_bullets", 3, (("x", 0, 9), ("y", 0, 8), ("right", 0, 1)), 2, False),
        ("e_bullets", 70, (("x", 0, 9), ("y", 0, 8), ("right", 0, 1)), 4, False),
        ("e_fish", 60, (("x", 0, 9), ("y", 0, 8), ("lr", 0, 1), ("move_timer", 0, MOVE_INTERVAL)), 5, True),
        ("e_subs", 60, (("x", 0, 9), ("y", 0, 8), ("lr", 0, 1), ("move_timer", 0, MOVE_INTERVAL),
                        ("shot_timer", 0, ENEMY_SHOT_INTERVAL)), 6, True),
        ("divers", 3, (("x", 0, 9), ("y", 0, 8), ("lr", 0, 1), ("move_timer", 0, DIVER_MOVE_INTERVAL)), 9, True),
    )
    fields = (
        Field("oxygen", 1, -1, MAX_OXYGEN), Field("diver_count", 1, MIN_DIVER_COUNT, 6), Field("sub_x", 1, 0, 9),
        Field("sub_y", 1, 0, 8), Field("sub_or", 1, 0, 1), Field("e_spawn_speed", 1, 1, SPAWN_SPEED),
        Field("e_spawn_timer", 1, 0, SPAWN_SPEED), Field("d_spawn_timer", 1, 0, DIVER_SPAWN_SPEED),
        Field("move_speed", 1, 2, MOVE_INTERVAL), Field("ramp_index", 1, 0, SPAWN_SPEED - 1),
        Field("shot_timer", 1, 0, SHOT_COOL_DOWN), Field("surface", 1, 0, 1),
    ) + tuple(
        f for name, cap, elements, _, _ in LISTS
        for f in (Field(f"{name}_count", 1, 0, cap), *(Field(f"{name}_{e}", cap, lo, hi) for e, lo, hi in elements))
    )  # fmt: skip
    minimal_actions = (0, 1, 2, 3, 4, 5)
    reset_draws, step_draws = 0, 5  # _spawn_enemy 3, _spawn_diver 2
    (OXYGEN, DIVER_COUNT, SUB_X, SUB_Y, SUB_OR, E_SPAWN_SPEED, E_SPAWN_TIMER, D_SPAWN_TIMER, MOVE_SPEED, RAMP_INDEX,
     SHOT_TIMER, SURFACE) = range(12)  # fmt: skip

    def _lists(self, s) -> list[_Entries]:
        out, offset = [], 12
        for _, cap, elements, _, _ in self.LISTS:
            out.append(_Entries(s, offset, cap, len(elements)))
            offset += 1 + cap * len(elements)
        return out

    def reset(self, n, device, u):
        s = torch.zeros(n, self.state_dim(), dtype=torch.int64, device=device)
        s[:, self.OXYGEN] = self.MAX_OXYGEN
        s[:, self.SUB_X] = 5
        s[:, self.E_SPAWN_SPEED] = s[:, self.E_SPAWN_TIMER] = self.SPAWN_SPEED
        s[:, self.D_SPAWN_TIMER] = self.DIVER_SPAWN_SPEED
        s[:, self.MOVE_SPEED] = self.MOVE_INTERVAL
        s[:, self.SURFACE] = 1
        return s

    def step(self, s, a, ramping, u):
        f_bullets, e_bullets, e_fish, e_subs, divers = self._lists(s)
        reward = torch.zeros_like(a)
        terminal = torch.zeros_like(a, dtype=torch.bool)
        move_speed = s[:, self.MOVE_SPEED].clone()

        def off(x):
            return (x < 0) | (x > 9)

        # _spawn_enemy (three draws; no spawn in a row with an enemy going the other way), then
        # _spawn_diver (two draws, the first ones if no enemy spawned).
        spawn = s[:, self.E_SPAWN_TIMER] == 0
        lr, is_sub, y = (u[0] < 1 / 2).long(), u[1] < 1 / 3, randint(u[2], 1, 9)
        blocked = torch.zeros_like(spawn)
        for entries in (e_subs, e_fish):
            other_way = (entries.v[:, 1] == y.unsqueeze(1)) & (entries.v[:, 2] != lr.unsqueeze(1))
            blocked |= (other_way & entries.alive()).any(1)
        x = torch.where(lr == 1, 0, 9)
        e_subs.append(spawn & ~blocked & is_sub, (x, y, lr, move_speed, self.ENEMY_SHOT_INTERVAL))
        e_fish.append(spawn & ~blocked & ~is_sub, (x, y, lr, move_speed))
        s[:, self.E_SPAWN_TIMER] = torch.where(spawn, s[:, self.E_SPAWN_SPEED], s[:, self.E_SPAWN_TIMER])
        d_spawn = s[:, self.D_SPAWN_TIMER] == 0
        d_lr = (torch.where(spawn, u[3], u[0]) < 1 / 2).long()
        d_y = randint(torch.where(spawn, u[4], u[1]), 1, 9)
        divers.append(d_spawn, (torch.where(d_lr == 1, 0, 9), d_y, d_lr, self.DIVER_MOVE_INTERVAL))
        s[:, self.D_SPAWN_TIMER] = torch.where(d_spawn, self.DIVER_SPAWN_SPEED, s[:, self.D_SPAWN_TIMER])

        # The player's action.
        sub_x, sub_y, sub_or = s[:, self.SUB_X], s[:, self.SUB_Y], s[:, self.SUB_OR]  # views
        fire = (a == 5) & (s[:, self.SHOT_TIMER] == 0)
        f_bullets.append(fire, (sub_x, sub_y, sub_or))
        s[:, self.SHOT_TIMER] = torch.where(fire, self.SHOT_COOL_DOWN, s[:, self.SHOT_TIMER])
        left, right = ~fire & (a == 1), ~fire & (a == 3)
        sub_x[:] = torch.where(left, (sub_x - 1).clamp(min=0), torch.where(right, (sub_x + 1).clamp(max=9), sub_x))
        sub_or[:] = torch.where(left, 0, torch.where(right, 1, sub_or))
        sub_y[:] = torch.where(~fire & (a == 2), (sub_y - 1).clamp(min=0),
                               torch.where(~fire & (a == 4), (sub_y + 1).clamp(max=8), sub_y))
        sub_x, sub_y = sub_x.clone(), sub_y.clone()

        def at_sub(x, y):
            return (x == sub_x) & (y == sub_y)

        # Friendly bullets: each hits the first fish, else the first enemy sub, on its new cell.
        alive = f_bullets.alive()
        for i in f_bullets.slots():
            act = alive[:, i]
            x = f_bullets.v[:, 0, i] + sign_of(f_bullets.v[:, 2, i])
            f_bullets.v[:, 0, i] = torch.where(act, x, f_bullets.v[:, 0, i])
            gone = act & off(x)
            y = f_bullets.v[:, 1, i]
            hit = e_fish.find(x, y, act & ~gone)
            hit |= e_subs.find(x, y, act & ~gone & ~hit)
            f_bullets.dead[:, i] |= gone | hit
            reward += hit.long()

        # Divers: picked up on the sub's cell while there is room.
        alive = divers.alive()
        for i in divers.slots():
            act = alive[:, i]
            x, y, lr, timer = divers.v[:, :, i].clone().unbind(1)
            on = act & at_sub(x, y) & (s[:, self.DIVER_COUNT] < 6)
            moves = act & ~on & (timer == 0)
            new_x = x + sign_of(lr)
            divers.v[:, 3, i] = torch.where(moves, self.DIVER_MOVE_INTERVAL, torch.where(act & ~on, timer - 1, timer))
            divers.v[:, 0, i] = torch.where(moves, new_x, x)
            gone = moves & off(new_x)
            picked = moves & ~gone & at_sub(new_x, y) & (s[:, self.DIVER_COUNT] < 6)
            divers.dead[:, i] |= on | gone | picked
            s[:, self.DIVER_COUNT] += (on | picked).long()

        def enemy_moves(enemies, i, act):
            """Enemy i (a sub or a fish): on the sub's cell it ends the episode; on its move timer
            it moves, off the grid it is gone, onto the sub it ends the episode, onto a friendly
            bullet it is shot (reward 1). Returns its cell after the move."""
            nonlocal terminal, reward
            x, y, lr, timer = enemies.v[:, :4, i].clone().unbind(1)
            terminal |= act & at_sub(x, y)
            moves = act & (timer == 0)
            x = torch.where(moves, x + sign_of(lr), x)
            gone = moves & off(x)
            meets = moves & ~gone & at_sub(x, y)
            terminal |= meets
            hit = f_bullets.find(x, y, moves & ~gone & ~meets)
            reward += hit.long()
            enemies.v[:, 0, i] = x
            enemies.v[:, 3, i] = torch.where(moves, move_speed, torch.where(act, timer - 1, timer))
            enemies.dead[:, i] |= gone | hit
            return x, y, lr

        # Enemy subs: they move, meet the sub or a bullet, and fire (removed ones too).
        alive = e_subs.alive()
        for i in e_subs.slots():
            act = alive[:, i]
            shot = e_subs.v[:, 4, i].clone()
            x, y, lr = enemy_moves(e_subs, i, act)
            fires = act & (shot == 0)
            e_bullets.append(fires, (x, y, lr))
            e_subs.v[:, 4, i] = torch.where(fires, self.ENEMY_SHOT_INTERVAL, torch.where(act, shot - 1, shot))

        # Enemy bullets: on the sub's cell before or after moving, they end the episode.
        alive = e_bullets.alive()
        for i in e_bullets.slots():
            act = alive[:, i]
            x, y, right = e_bullets.v[:, :, i].clone().unbind(1)
            terminal |= act & at_sub(x, y)
            x = torch.where(act, x + sign_of(right), x)
            e_bullets.v[:, 0, i] = x
            gone = act & off(x)
            terminal |= act & ~gone & at_sub(x, y)
            e_bullets.dead[:, i] |= gone

        # Enemy fish.
        alive = e_fish.alive()
        for i in e_fish.slots():
            enemy_moves(e_fish, i, alive[:, i])

        for entries in (f_bullets, e_bullets, e_fish, e_subs, divers):
            entries.compact()

        for k in (self.E_SPAWN_TIMER, self.D_SPAWN_TIMER, self.SHOT_TIMER):
            s[:, k] -= (s[:, k] > 0).long()
        oxygen, divers_on_board = s[:, self.OXYGEN], s[:, self.DIVER_COUNT]  # views
        terminal |= oxygen <= 0
        below = sub_y > 0
        oxygen -= below.long()
        surfacing = ~below & (s[:, self.SURFACE] == 0)
        s[:, self.SURFACE] = torch.where(below, 0, s[:, self.SURFACE])
        terminal |= surfacing & (divers_on_board == 0)
        # _surface, and its bug: with 6 divers, diver_count is set to 0 and then decremented to -1.
        surfaces = surfacing & (divers_on_board != 0)
        full = surfaces & (divers_on_board == 6)
        reward += torch.where(full, torch.div(oxygen * 10, self.MAX_OXYGEN, rounding_mode="floor"), 0)
        divers_on_board[:] = torch.where(full, 0, divers_on_board) - surfaces.long()
        oxygen[:] = torch.where(surfaces, self.MAX_OXYGEN, oxygen)
        s[:, self.SURFACE] = torch.where(surfaces, 1, s[:, self.SURFACE])
        if ramping:
            spawn_speed, ramp_index = s[:, self.E_SPAWN_SPEED], s[:, self.RAMP_INDEX]
            ramps = surfaces & ((spawn_speed > 1) | (move_speed > 2))
            s[:, self.MOVE_SPEED] -= (ramps & (move_speed > 2) & (ramp_index % 2 == 1)).long()
            spawn_speed -= (ramps & (spawn_speed > 1)).long()
            ramp_index += ramps.long()
        return reward, terminal

    def observe(self, s):
        n = s.shape[0]
        obs = torch.zeros(n, ROWS, COLS, self.channels, dtype=torch.bool, device=s.device)
        env = torch.arange(n, device=s.device)
        sub_x, sub_y = s[:, self.SUB_X], s[:, self.SUB_Y]
        obs[env, sub_y, sub_x, 0] = True
        obs[env, sub_y, torch.where(s[:, self.SUB_OR] == 1, sub_x - 1, sub_x + 1), 1] = True
        col = torch.arange(COLS, device=s.device)
        oxygen = torch.div(s[:, self.OXYGEN].clamp(min=0) * 10, self.MAX_OXYGEN, rounding_mode="floor")
        obs[:, 9, :, 7] = col < oxygen.unsqueeze(1)
        obs[:, 9, :, 8] = (col >= 9 - s[:, self.DIVER_COUNT].unsqueeze(1)) & (col < 9)
        for entries, (_, _, _, channel, trail) in zip(self._lists(s), self.LISTS):
            alive = entries.alive()
            e = env.unsqueeze(1).expand_as(alive)[alive]
            x, y = entries.v[:, 0][alive], entries.v[:, 1][alive]
            obs[e, y, x, channel] = True
            if trail:
                back_x = x - sign_of(entries.v[:, 2][alive])
                on = (back_x >= 0) & (back_x <= 9)
                obs[e[on], y[on], back_x[on], 3] = True
        return obs

    def unsteppable(self, s):
        past = torch.zeros(s.shape[0], dtype=torch.bool, device=s.device)
        for entries in self._lists(s):
            past |= ((entries.v != 0) & ~entries.alive().unsqueeze(1)).flatten(1).any(1)
        # A sub facing the side it is on (unreachable: moving sets its facing) has its back off the grid.
        sub_x, sub_or = s[:, self.SUB_X], s[:, self.SUB_OR]
        facing_out = ((sub_x == 0) & (sub_or == 1)) | ((sub_x == 9) & (sub_or == 0))
        return past | facing_out, ("Seaquest's list entries past their count must be 0, and its sub must not face the "
                                   "side it is on (sub_x 0 with sub_or 1, or 9 with 0)")


def sign_of(lr: torch.Tensor) -> torch.Tensor:
    """+1 for an entity moving right (lr 1), -1 for one moving left."""
    return torch.where(lr == 1, 1, -1)


# The fallback's games by name, in the registry's order (csrc/core/minatar/registry.h).
GAMES: dict[str, type[Game]] = {g.name: g for g in (Breakout, Freeway, Asterix, SpaceInvaders, Seaquest)}
