"""The MinAtar ops in PyTorch: the fallback of the native kernels, with the interface of
``fastrl._C.MinAtarBinding`` (the env's tensors bound once, then ``reset()`` and ``step(action)``).

A step is core::minatar::step_env (csrc/core/minatar/batch.h) on the whole batch: the sticky
draw and the game's frame for every env, time limit and episode statistics, then the autoresets,
all drawn from the env's Philox streams like the kernels' (fastrl/envs/rng.py).
"""

from __future__ import annotations

import torch

from fastrl.envs import _checks
from fastrl.envs.fallback import EnvTensors
from fastrl.envs.minatar.games import Game
from fastrl.envs.rng import reset_uniforms, step_uniforms


class MinAtarTorchBinding:
    """``minatar_reset`` / ``minatar_step`` of ``game`` on ``tensors`` (state int32 ``[N, 1 + S]``).

    ``action_set``: the package's actions of the id's action indices; ``sticky_action_prob`` and
    ``ramping``: the env's keyword arguments; ``max_episode_steps`` None for no time limit.
    """

    def __init__(self, game: Game, action_set: tuple[int, ...], tensors: EnvTensors, sticky_action_prob: float,
                 ramping: bool, max_episode_steps: int | None, same_step: bool, first_env: int = 0):
        self.game = game
        self.t = tensors
        self.action_set = torch.tensor(action_set, dtype=torch.int64, device=tensors.state.device)
        self.sticky_action_prob = sticky_action_prob
        self.ramping = ramping
        self.max_episode_steps = max_episode_steps
        self.same_step = same_step
        self.first_env = first_env  # global index of env 0: env i's streams are keyed by first_env + i

    def reset(self) -> torch.Tensor:
        """Starts a new episode in every env (the last actions are kept); returns the observations."""
        return self._reset_where(torch.ones_like(self.t.autoreset))

    def step(self, action: torch.Tensor):
        """One step of every env with ``action`` (int64 ``[N]``, checked by the caller)."""
        t, game = self.t, self.game
        n = t.state.shape[0]
        env = torch.arange(n, device=t.state.device) + self.first_env
        s = t.state.long()
        u = step_uniforms(t.seeds, env, t.resets, t.elapsed, 1 + game.step_draws)
        # Environment.act: the sticky draw first, then the game's own draws.
        # An unchecked action out of range (validate=False) is the no-op, as in step_env.
        k = self.action_set.shape[0]
        a = torch.where((action >= 0) & (action < k), self.action_set[action.clamp(0, k - 1)], 0)
        a = torch.where(u[0] < self.sticky_action_prob, s[:, 0], a)
        s[:, 0] = a
        reward, term = game.step(s[:, 1:], a, self.ramping, u[1:])
        if self.same_step:
            skip = torch.zeros_like(t.autoreset)
        else:
            # NEXT_STEP: an env that ended on the previous step is reset instead of stepped.
            skip = t.autoreset.clone()
            s = torch.where(skip.unsqueeze(1), t.state.long(), s)
        t.state.copy_(s)
        reward = torch.where(skip, 0, reward).to(t.episode_return.dtype)
        term = term & ~skip
        # Lengths saturate at 2**31 - 1 (core::minatar::step_env).
        t.elapsed.clamp_(max=_checks.MAX_EPISODE_STEPS - 1).add_(1)
        length, ret = t.elapsed, t.episode_return.add_(reward)
        if self.max_episode_steps is None:
            trunc = torch.zeros_like(term)
        else:
            trunc = (length >= self.max_episode_steps) & ~skip
        ended = term | trunc
        final_return = ret * ended.to(ret.dtype) + 0.0  # + 0.0: no -0.0 (as torch.where)
        final_length = length * ended
        if self.same_step:
            final_obs = game.observe(s[:, 1:])
            obs = self._reset_where(ended)
        else:
            final_obs = torch.zeros(0, *game_obs_shape(game), dtype=torch.bool, device=s.device)
            obs = self._reset_where(skip)
            t.autoreset.copy_(ended)
        return obs, reward, term, trunc, ended, final_obs, final_return, final_length

    def _reset_where(self, mask: torch.Tensor) -> torch.Tensor:
        """Resets the envs in ``mask`` (core::minatar::reset_env); returns every env's observation."""
        t, game = self.t, self.game
        env = torch.arange(t.state.shape[0], device=t.state.device) + self.first_env
        fresh = game.reset(env.shape[0], env.device, reset_uniforms(t.seeds, env, t.resets, game.reset_draws))
        t.state[:, 1:] = torch.where(mask.unsqueeze(1), fresh, t.state[:, 1:].long()).to(torch.int32)
        t.resets.add_(mask)
        t.elapsed.masked_fill_(mask, 0)
        t.episode_return.masked_fill_(mask, 0)
        t.autoreset.masked_fill_(mask, False)
        return game.observe(t.state[:, 1:].long())


def game_obs_shape(game: Game) -> tuple[int, int, int]:
    return (10, 10, game.channels)
