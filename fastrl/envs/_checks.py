"""Argument checks shared by the native and the gymnasium-backed envs, so both raise the same
errors (naming the argument) for the same bad input. numpy integers are accepted wherever Python
ints are: both are ``numbers.Integral``, bools are not."""

from __future__ import annotations

import math
from numbers import Integral, Real

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

# Episode lengths are counted in int32 (in the kernels' state), and saturate there.
MAX_EPISODE_STEPS = 2**31 - 1
# The spaces whose values are one tensor per env; the others (Tuple, Dict, Text, ...) are refused.
TENSOR_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def is_int(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, (bool, np.bool_))


def integer(name: str, x, low: int, high: int | None = None) -> int:
    """An int (or numpy integer) in [low, high], as a Python int."""
    if not is_int(x):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    x = int(x)
    if x < low or (high is not None and x > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bounds}, got {x}")
    return x


def seeds(seed, num_envs: int) -> int | list[int]:
    """``seed``: an int (for every env) or a sequence of ``num_envs`` of them, each in [0, 2**63)
    (the Philox key is 64 bits; int64 tensors hold it). Returns an int or a list of ints."""
    if is_int(seed):
        return integer("seed", seed, 0, 2**63 - 1)
    if isinstance(seed, (str, bytes)) or not hasattr(seed, "__len__"):
        raise TypeError(f"seed must be an int or a sequence of {num_envs} ints, got {type(seed).__name__}")
    seed = seed.tolist() if isinstance(seed, (np.ndarray, torch.Tensor)) else list(seed)
    if len(seed) != num_envs:
        raise ValueError(f"seed must be an int or a sequence of {num_envs} ints (one per env), got {len(seed)} of them")
    return [integer("seed", s, 0, 2**63 - 1) for s in seed]


def real(name: str, x) -> float:
    """A finite real number (numpy's included), as a float."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return float(x)


def flag(name: str, x) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(x).__name__}")
    return bool(x)


def max_episode_steps(x) -> int | None:
    """None (no time limit) or an int in [1, 2**31 - 1]."""
    if x is None:
        return None
    if is_int(x) and x > MAX_EPISODE_STEPS:
        raise ValueError(f"max_episode_steps must be <= 2**31 - 1 (episode lengths are int32), got {x}; "
                         f"use max_episode_steps=None for no time limit")
    return integer("max_episode_steps", x, 1)


def tensor_spaces(env_id: str, observation_space, action_space) -> None:
    for what, space in (("observation", observation_space), ("action", action_space)):
        if not isinstance(space, TENSOR_SPACES):
            raise ValueError(f"{env_id} has the {what} space {space}, which fastrl cannot hold as one tensor per "
                             f"env: its envs take Box, Discrete, MultiDiscrete and MultiBinary spaces")


def actions(env_id: str, x, space: gymnasium.Space, num_envs: int, device: torch.device) -> torch.Tensor:
    """The actions' type, device, dtype kind and shape: ``[num_envs, *space.shape]``, integers for
    Discrete/MultiDiscrete/MultiBinary spaces and floats for Box ones. numpy arrays are converted."""
    if isinstance(x, np.ndarray):
        x = _from_numpy(x).to(device)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"actions must be a torch.Tensor, got {type(x).__name__}")
    if x.device != device:
        raise ValueError(f"actions are on {x.device} but the env is on {device}")
    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating):
        if not x.dtype.is_floating_point:
            raise TypeError(f"actions must be a floating-point tensor for {env_id}, got {x.dtype}")
    elif x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"actions must be an integer tensor for {env_id}, got {x.dtype}")
    shape = (num_envs, *space.shape)
    if tuple(x.shape) != shape:
        raise ValueError(f"actions must have shape {shape}, got {tuple(x.shape)}")
    return x


def _from_numpy(x: np.ndarray) -> torch.Tensor:
    """A numpy array as a tensor; a read-only one (a broadcast, another library's buffer) is copied
    first: torch.from_numpy warns on those (an error under ``-W error``)."""
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def reset_mask(x, num_envs: int, device: torch.device) -> torch.Tensor:
    """``options["reset_mask"]``: bools of shape ``(num_envs,)`` with at least one True (as
    gymnasium's vector envs require), a numpy array or a tensor; returned as a tensor on ``device``."""
    if isinstance(x, np.ndarray):
        x = _from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"options['reset_mask'] must be a numpy array or a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.bool:
        raise TypeError(f"options['reset_mask'] must hold bools, got {x.dtype}")
    if tuple(x.shape) != (num_envs,):
        raise ValueError(f"options['reset_mask'] must have shape ({num_envs},), got {tuple(x.shape)}")
    x = x.to(device)
    if not bool(x.any()):
        raise ValueError("options['reset_mask'] must have at least one True value")
    return x


def reset_options(env_id: str, options) -> dict:
    """``reset``'s options: None or a dict whose only key is "reset_mask"."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = set(options) - {"reset_mask"}
    if unknown:
        raise ValueError(f"{env_id} takes only the reset option 'reset_mask', got {sorted(unknown)}")
    return options


def action_values(env_id: str, x: torch.Tensor, space: gymnasium.Space) -> None:
    """Discrete actions in the space's range, continuous ones not NaN (a host sync on a GPU)."""
    if isinstance(space, spaces.Box):
        if x.dtype.is_floating_point and bool(torch.isnan(x).any()):
            raise ValueError("actions contain NaN")
        return
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n - 1)
    elif isinstance(space, spaces.MultiBinary):
        low, high = 0, 1
    else:  # MultiDiscrete: a range per action dimension
        start = torch.as_tensor(space.start, device=x.device)
        if bool(((x < start) | (x >= start + torch.as_tensor(space.nvec, device=x.device))).any()):
            raise ValueError(f"actions must be in [start, start + nvec) = [{space.start.tolist()}, "
                             f"{(space.start + space.nvec).tolist()}) for {env_id}, got {x.flatten()[:8].tolist()}...")
        return
    if bool(((x < low) | (x > high)).any()):
        raise ValueError(f"actions must be in [{low}, {high}] for {env_id}, got {x.flatten()[:8].tolist()}...")
