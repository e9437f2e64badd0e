"""Batched environments with gymnasium's VectorEnv API on torch tensors.

    env = fastrl.envs.make("CartPole-v1", num_envs=4096, device="cuda")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(torch.randint(0, 2, (4096,), device="cuda"))

The ids in ``NATIVE_ENVS`` (the registry of csrc/core/envs/registry.h) run natively (C++/CUDA, or
their PyTorch fallback); any other gymnasium id runs on gymnasium's own vector env. Importing this
module registers the native envs with gymnasium as ``fastrl/<id>`` (``gymnasium.make_vec``);
:class:`TorchToNumpy` makes any of these envs a numpy one, for gymnasium's vector wrappers.
"""

from __future__ import annotations

import gymnasium
import torch
from gymnasium.vector import AutoresetMode

from fastrl.envs import _checks, gym_registration
from fastrl.envs.gym_vector import GymnasiumVectorEnv
from fastrl.envs.minatar import MINATAR_ENVS, MINATAR_SPECS, MinAtarVectorEnv, make_minatar
from fastrl.envs.numpy_wrapper import TorchToNumpy
from fastrl.envs.registry import NATIVE_ENVS, NATIVE_SPECS, NativeEnvSpec
from fastrl.envs.vector import ClassicVectorEnv

__all__ = ["make", "ClassicVectorEnv", "GymnasiumVectorEnv", "TorchToNumpy", "NATIVE_ENVS", "NATIVE_SPECS",
           "NativeEnvSpec", "MINATAR_ENVS", "MINATAR_SPECS", "MinAtarVectorEnv"]


def make(
    env_id: str,
    num_envs: int,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
    autoreset_mode="next_step",
    validate: bool | None = None,
    render_mode: str | None = None,
    **env_kwargs,
):
    """``num_envs`` copies of ``env_id`` as one VectorEnv on ``device``.

    Args:
        num_envs: an int >= 1 (numpy integers are accepted wherever ints are).
        dtype: float32 (fast; the same bits on the CPU and a GPU) or float64 (reproduces
            gymnasium bit for bit on the CPU; on a GPU to ~1e-9: CUDA's sin/cos/pow are not glibc's).
        seed: seed of the first ``reset()`` without one (default: random): an int in [0, 2**63)
            or one per env.
        autoreset_mode: "next_step" (gymnasium's default), "same_step", or an AutoresetMode.
        validate: check action values (range, NaN) on every step. Default: True on the CPU and
            False on a GPU, where the check would synchronize with the host; shapes, dtypes and
            devices are always checked. The native CPU kernel checks values even when False; an
            unchecked bad action on a GPU is stepped as it is (docs/envs.md, "CPU and GPU").
        render_mode: None or "rgb_array" (``render()`` then returns a frame per env, drawn by
            gymnasium's renderer: needs pygame: the ``render`` extra; MinAtar ids draw their own
            10x10 frames in the ``minatar`` package's colours); other ids take the render modes of
            their gymnasium env.
        env_kwargs: ``max_episode_steps`` (default: the gymnasium spec's; an int in
            [1, 2**31 - 1], or None for no time limit) and the env's own keyword arguments,
            gymnasium's (``NATIVE_SPECS[env_id].params`` lists them with their defaults).
            MinAtar ids (``MINATAR_ENVS``) take ``sticky_action_prob`` (in [0, 1], default 0.1)
            and ``difficulty_ramping`` (default True), and have no time limit by default.

    Other gymnasium ids run on gymnasium's own envs (:class:`GymnasiumVectorEnv`); their spaces
    must be Box, Discrete, MultiDiscrete or MultiBinary (a Tuple or Dict space is refused).
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str, got {type(env_id).__name__}")
    num_envs = _checks.integer("num_envs", num_envs, 1)
    if seed is not None:
        seed = _checks.seeds(seed, num_envs)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but CUDA is not available to this torch "
                             f"({torch.__version__}): use device='cpu' or a CUDA build of torch")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    modes = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}
    mode = modes.get(autoreset_mode, autoreset_mode)
    if mode not in modes.values():
        raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step', got {autoreset_mode!r}")
    if env_id.startswith("MinAtar/"):  # fastrl's own MinAtar games, not gymnasium's registry
        if env_id not in MINATAR_SPECS:
            raise ValueError(f"env_id {env_id!r} is not a MinAtar game fastrl implements: {list(MINATAR_ENVS)}")
        return make_minatar(MINATAR_SPECS[env_id], num_envs, device, dtype, seed, mode, validate, env_kwargs,
                            render_mode)
    if env_id not in gymnasium.registry:
        raise ValueError(f"env_id {env_id!r} is not a registered gymnasium environment")

    max_episode_steps = _checks.max_episode_steps(
        env_kwargs.pop("max_episode_steps", gymnasium.spec(env_id).max_episode_steps)
    )
    spec = NATIVE_SPECS.get(env_id)
    if spec is None:
        return GymnasiumVectorEnv(env_id, num_envs, device, dtype, seed, mode, max_episode_steps,
                                  render_mode=render_mode, **env_kwargs)
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be None or 'rgb_array' for {env_id}, got {render_mode!r}")
    unknown = set(env_kwargs) - set(spec.params)
    if unknown:
        raise TypeError(f"{env_id} got unexpected keyword arguments {sorted(unknown)}; "
                        f"it takes max_episode_steps and {sorted(spec.params)}")
    # Checked here, as the native ops take them as floats (a bool flag as 0 or 1).
    for k, v in env_kwargs.items():
        env_kwargs[k] = (_checks.flag if isinstance(spec.params[k], bool) else _checks.real)(k, v)
    params = {**spec.params, **env_kwargs}
    if validate is None:
        validate = device.type == "cpu"
    return ClassicVectorEnv(spec, num_envs, device, dtype, seed, mode, max_episode_steps, params, validate,
                            render_mode)


gym_registration.register(NATIVE_ENVS)
