"""Any other gymnasium id: gymnasium's own vector env behind the same torch-tensor interface.

This is the slow path: every step moves actions to the host and observations back (a host sync
on a GPU) and steps the envs in Python. Its state cannot be saved (gymnasium's vector envs hold
closures), so a trainer resumed from a checkpoint resets these envs: not an exact continuation.
Actions are checked as the native envs check them (fastrl/envs/_checks.py), values included
(they are on the host anyway), so a bad action raises the same error and never reaches
gymnasium, whose envs would fail halfway through a step.
"""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import torch
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from fastrl.envs import _checks


class GymnasiumVectorEnv(VectorEnv):
    """Wraps ``gymnasium.make_vec(env_id, num_envs)``: numpy in and out becomes torch tensors on
    ``device`` (floating observations and rewards in ``dtype``). ``info`` keeps the native envs'
    contract: ``info["episode"]["r"/"l"]`` and ``info["_episode"]`` (gymnasium's
    RecordEpisodeStatistics), and with SAME_STEP autoreset a dense ``info["final_obs"]`` tensor
    (zeros where no episode ended) with its mask ``info["_final_obs"]``. ``max_episode_steps``
    None means no time limit. Spaces other than Box, Discrete, MultiDiscrete and MultiBinary are
    refused (ValueError)."""

    def __init__(self, env_id: str, num_envs: int, device, dtype, seed, autoreset_mode,
                 max_episode_steps: int | None, **kwargs):
        # gymnasium.make reads max_episode_steps=None as "the spec's": no limit needs a spec without one.
        spec = dataclasses.replace(gymnasium.spec(env_id), max_episode_steps=max_episode_steps)
        env = gymnasium.make_vec(spec, num_envs=num_envs, vectorization_mode="sync",
                                 vector_kwargs={"autoreset_mode": autoreset_mode}, **kwargs)
        try:
            _checks.tensor_spaces(env_id, env.single_observation_space, env.single_action_space)
        except ValueError:
            env.close()
            raise
        self.env = RecordEpisodeStatistics(env)
        self.env_id = env_id
        self.max_episode_steps = max_episode_steps
        self._same_step = autoreset_mode == AutoresetMode.SAME_STEP
        self.num_envs = num_envs
        self.device = device
        self.dtype = dtype
        self.metadata = dict(self.env.metadata, autoreset_mode=autoreset_mode)
        self.render_mode = self.env.render_mode
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self._initial_seed = seed
        self._reset_done = False  # step before reset raises ResetNeeded, as on the native envs

    def _tensor(self, x):
        if isinstance(x, dict):
            return {k: self._tensor(v) for k, v in x.items()}
        if isinstance(x, np.ndarray) and x.dtype != object:
            t = torch.from_numpy(x)
            return t.to(self.device, self.dtype if t.is_floating_point() else None)
        return x

    def reset(self, *, seed=None, options=None):
        """``seed``: an int (env i gets seed + i, as in gymnasium) or one per env; None continues
        (using ``make``'s seed the first time). ``options["reset_mask"]`` (bools ``[N]``, numpy or
        torch) resets only those envs, as gymnasium's vector envs do."""
        if self.closed:
            raise ClosedEnvironmentError(f"{self!r} is closed: make a new env")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
        options = dict(options) if options else None
        mask = options.get("reset_mask") if options else None
        if mask is not None:
            mask = _checks.reset_mask(mask, self.num_envs, torch.device("cpu")).numpy()
            if not self._reset_done:
                raise ResetNeeded("Cannot reset some envs (options['reset_mask']) before a full env.reset()")
            options["reset_mask"] = mask
        if seed is None:
            seed, self._initial_seed = self._initial_seed, None
        else:
            seed = _checks.seeds(seed, self.num_envs)
        # gymnasium's SyncVectorEnv pops the mask from the options RecordEpisodeStatistics passes
        # it, which then restarts every env's statistics: the other envs' are put back.
        stats = ("episode_returns", "episode_lengths", "episode_start_times", "prev_dones")
        kept = {k: getattr(self.env, k).copy() for k in stats} if mask is not None else {}
        obs, info = self.env.reset(seed=seed, options=options)
        for k, old in kept.items():
            getattr(self.env, k)[~mask] = old[~mask]
        self._reset_done = True
        return self._tensor(obs), self._tensor(info)

    def step(self, actions):
        if self.closed:
            raise ClosedEnvironmentError(f"{self!r} is closed: make a new env")
        if not self._reset_done:
            raise ResetNeeded("Cannot call env.step() before calling env.reset()")
        space = self.single_action_space
        actions = _checks.actions(self.env_id, actions, space, self.num_envs, self.device).detach().cpu()
        _checks.action_values(self.env_id, actions, space)
        obs, reward, terminated, truncated, info = self.env.step(actions.numpy().astype(space.dtype))
        info = dict(info)
        ended = terminated | truncated
        info.setdefault("episode", {"r": np.zeros(self.num_envs), "l": np.zeros(self.num_envs, dtype=np.int64)})
        info.setdefault("_episode", ended)
        info["episode"] = {k: info["episode"][k] for k in ("r", "l")}
        if self._same_step:
            final = np.zeros_like(obs)
            for i in np.flatnonzero(info.get("_final_obs", np.zeros(self.num_envs, dtype=bool))):
                final[i] = info["final_obs"][i]
            info["final_obs"], info["_final_obs"] = final, ended
        return (self._tensor(obs), self._tensor(np.asarray(reward)), self._tensor(terminated),
                self._tensor(truncated), self._tensor(info))

    def render(self):
        """gymnasium's frames, one per env (with ``make``'s ``render_mode``)."""
        return self.env.render()

    def close_extras(self, **kwargs):
        self.env.close(**kwargs)

    def __repr__(self) -> str:
        return f"GymnasiumVectorEnv({self.env_id}, num_envs={self.num_envs}, device={self.device})"
