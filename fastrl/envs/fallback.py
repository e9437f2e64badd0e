"""The env ops in PyTorch: the fallback of the native kernels, with the same interface as
``fastrl._C.EnvBinding`` (the env's tensors bound once, then ``reset()`` and ``step(action)``).

A step is the two passes of csrc/core/envs/batch.h on the whole batch: the physics of every env
(fastrl/envs/classic.py), reward, termination, TimeLimit truncation and episode statistics, then
the autoresets, drawn from each env's Philox stream like the kernels' (fastrl/envs/rng.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from fastrl.envs import _checks
from fastrl.envs.classic import Physics
from fastrl.envs.rng import reset_uniforms


class EnvTensors(NamedTuple):
    """The per-env tensors a step updates in place, in the order the native ops take them."""

    state: torch.Tensor  # [S, N] SoA, float32 or float64
    elapsed: torch.Tensor  # [N] int32: steps in the current episode (saturates at 2**31 - 1)
    episode_return: torch.Tensor  # [N] return of the current episode so far
    autoreset: torch.Tensor  # [N] bool: NEXT_STEP resets this env on the next step
    resets: torch.Tensor  # [N] int64: resets so far, the counter of the env's Philox stream
    seeds: torch.Tensor  # [N] int64: the key of the env's Philox stream


class TorchEnvBinding:
    """``env_reset`` / ``env_step`` of ``physics`` on ``tensors``, in PyTorch.

    ``max_episode_steps``: None for no time limit; ``same_step``: SAME_STEP autoreset (else
    NEXT_STEP). ``step`` returns what the native op returns: obs, reward, terminated, truncated,
    done (the episodes that ended), final_obs (``[0, O]`` unless same_step), final_return and
    final_length (0 where no episode ended).
    """

    def __init__(self, physics: Physics, tensors: EnvTensors, max_episode_steps: int | None, same_step: bool,
                 first_env: int = 0):
        self.physics = physics
        self.t = tensors
        self.max_episode_steps = max_episode_steps
        self.same_step = same_step
        self.first_env = first_env  # global index of env 0: env i's reset stream is (seed, first_env + i)

    def reset(self) -> torch.Tensor:
        """Starts a new episode in every env (core::reset_env); returns the observations."""
        t, physics = self.t, self.physics
        idx = torch.arange(t.state.shape[1], device=t.state.device)
        u = reset_uniforms(t.seeds, idx + self.first_env, t.resets, physics.reset_draws)
        t.state.copy_(physics.initial_state(u, t.state.dtype))
        t.resets.add_(1)
        t.elapsed.zero_()
        t.episode_return.zero_()
        t.autoreset.zero_()
        return physics.observe(t.state)

    def step(self, action: torch.Tensor):
        """One step of every env with ``action`` (checked by the caller: int64 ``[N]`` or ``[N, 1]``
        in the state's dtype)."""
        t, physics = self.t, self.physics
        reward, term = physics.step(t.state, action, t.elapsed)
        # Lengths saturate at 2**31 - 1 (core::advance): an int32 counter that never overflows.
        t.elapsed.clamp_(max=_checks.MAX_EPISODE_STEPS - 1).add_(1)
        length, ret = t.elapsed, t.episode_return.add_(reward)
        if self.max_episode_steps is None:
            trunc = torch.zeros_like(term)
        else:
            trunc = length >= self.max_episode_steps
        done = term | trunc
        if self.same_step:
            reset_now = ended = done
            final_obs = physics.observe(t.state)
        else:
            reset_now = t.autoreset.clone()
            final_obs = t.state.new_empty(0, physics.obs_dim)
            # The reset step has no reward and ends nothing.
            keep = ~reset_now
            reward = torch.where(keep, reward, 0.0)
            term, trunc = term & keep, trunc & keep
            ended = done & keep
            t.autoreset.copy_(ended)  # reset on the next step
        # ret * ended, with + 0.0 turning the -0.0 of negative returns into +0.0 (like torch.where,
        # and much faster than it or masked_fill on the CPU); returns are finite.
        final_return = ret * ended.to(ret.dtype) + 0.0
        final_length = length * ended
        obs = self._reset_where(reset_now)
        return obs, reward, term, trunc, ended, final_obs, final_return, final_length

    def _reset_where(self, mask: torch.Tensor) -> torch.Tensor:
        """Resets the envs in ``mask`` (core::autoreset); returns the observations of all envs."""
        t, physics = self.t, self.physics
        if t.state.device.type == "cpu":
            # Draw only for the envs that reset (about 1 in 20 per step): on the CPU the host knows
            # which, and Philox on all envs would cost 20 times more.
            # Index writes: masked_fill_ is several times slower on the CPU.
            idx = mask.nonzero().squeeze(1)
            if idx.numel():
                u = reset_uniforms(t.seeds[idx], idx + self.first_env, t.resets[idx], physics.reset_draws)
                t.state[:, idx] = physics.initial_state(u, t.state.dtype)
                t.resets[idx] += 1
                t.elapsed[idx] = 0
                t.episode_return[idx] = 0
                t.autoreset[idx] = False
            return physics.observe(t.state)
        # On a GPU, drawing for all envs avoids a host sync.
        idx = torch.arange(t.state.shape[1], device=t.state.device)
        fresh = physics.initial_state(reset_uniforms(t.seeds, idx + self.first_env, t.resets, physics.reset_draws),
                                      t.state.dtype)
        t.state.copy_(torch.where(mask, fresh, t.state))
        t.resets.add_(mask)
        t.elapsed.masked_fill_(mask, 0)
        t.episode_return.masked_fill_(mask, 0)
        t.autoreset.masked_fill_(mask, False)
        return physics.observe(t.state)
