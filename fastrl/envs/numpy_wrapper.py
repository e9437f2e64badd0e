"""fastrl's envs as numpy envs, for code written for gymnasium's: gymnasium's vector wrappers
(RecordEpisodeStatistics, NormalizeObservation, NormalizeReward, DictInfoToList,
FlattenObservation, RecordVideo, ...) and CleanRL-style loops.

fastrl's envs take and return torch tensors on their device. Code that treats them as numpy
arrays warns on every step (``np.logical_or`` on tensors: NumPy's ``__array_wrap__``
deprecation; ``torch.tensor(tensor)``: torch's copy warning) or fails (gymnasium's wrappers index
numpy arrays with them). :class:`TorchToNumpy` is the one call between the two worlds.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper

# fastrl's own episode statistics: dropped, so that gymnasium's RecordEpisodeStatistics (which
# refuses to overwrite an "episode" key) can be stacked on top, as on any gymnasium env.
_FASTRL_STATS = ("episode", "_episode")


class TorchToNumpy(VectorWrapper):
    """A fastrl vector env (or any env of torch tensors) with numpy actions in and numpy out.

    ``step`` takes numpy arrays (or lists, or tensors) and returns numpy arrays: observations,
    rewards, terminated and truncated in the env's dtypes, ``info`` converted key by key, without
    fastrl's ``info["episode"]`` / ``info["_episode"]`` (wrap gymnasium's RecordEpisodeStatistics
    for them, as on gymnasium's envs: it records the same returns and lengths). On the CPU the
    arrays share memory with the env's fresh output tensors (no copy); on a GPU every step copies
    to the host and synchronizes. ``reset``'s ``options["reset_mask"]`` may be a numpy array.
    """

    def __init__(self, env: VectorEnv):
        super().__init__(env)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return _numpy(obs), _numpy_info(info)

    def step(self, actions):
        if not isinstance(actions, (np.ndarray, torch.Tensor)):
            actions = np.asarray(actions)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return _numpy(obs), _numpy(reward), _numpy(terminated), _numpy(truncated), _numpy_info(info)


def _numpy(x):
    """Tensors as numpy arrays (a dict's values too); anything else as it is."""
    if isinstance(x, torch.Tensor):
        return x.numpy(force=True)
    if isinstance(x, dict):
        return {k: _numpy(v) for k, v in x.items()}
    return x


def _numpy_info(info: dict) -> dict:
    return {k: _numpy(v) for k, v in info.items() if k not in _FASTRL_STATS}
