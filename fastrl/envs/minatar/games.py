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


# The fallback's games by name, in the registry's order (csrc/core/minatar/registry.h).
GAMES: dict[str, type[Game]] = {g.name: g for g in (Breakout, Freeway, Asterix, SpaceInvaders)}
