"""Any other gymnasium id: gymnasium's own vector env behind the same torch-tensor interface.

This is the slow path: every step moves actions to the host and observations back (a host sync
on a GPU) and steps the envs in Python. Its state cannot be saved (gymnasium's vector envs hold
closures), so a trainer resumed from a checkpoint resets these envs: not an exact continuation.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics


class GymnasiumVectorEnv(VectorEnv):
    """Wraps ``gymnasium.make_vec(env_id, num_envs)``: numpy in and out becomes torch tensors on
    ``device`` (floating observations and rewards in ``dtype``). ``info`` keeps the native envs'
    contract: ``info["episode"]["r"/"l"]`` and ``info["_episode"]`` (gymnasium's
    RecordEpisodeStatistics), and with SAME_STEP autoreset a dense ``info["final_obs"]`` tensor
    (zeros where no episode ended) with its mask ``info["_final_obs"]``."""

    def __init__(self, env_id: str, num_envs: int, device, dtype, seed, autoreset_mode, **kwargs):
        self.env = RecordEpisodeStatistics(gymnasium.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": autoreset_mode}, **kwargs,
        ))
        self._same_step = autoreset_mode == AutoresetMode.SAME_STEP
        self.num_envs = num_envs
        self.device = device
        self.dtype = dtype
        self.metadata = dict(self.env.metadata, autoreset_mode=autoreset_mode)
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self._initial_seed = seed

    def _tensor(self, x):
        if isinstance(x, dict):
            return {k: self._tensor(v) for k, v in x.items()}
        if isinstance(x, np.ndarray) and x.dtype != object:
            t = torch.from_numpy(x)
            return t.to(self.device, self.dtype if t.is_floating_point() else None)
        return x

    def reset(self, *, seed=None, options=None):
        if seed is None:
            seed, self._initial_seed = self._initial_seed, None
        obs, info = self.env.reset(seed=seed, options=options)
        return self._tensor(obs), self._tensor(info)

    def step(self, actions):
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        obs, reward, terminated, truncated, info = self.env.step(actions)
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

    def close(self, **kwargs):
        self.env.close(**kwargs)
