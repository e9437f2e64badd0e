"""MinAtar games as a batched VectorEnv on torch tensors (see :func:`fastrl.envs.make`).

The gymnasium API, autoreset, episode statistics, seeding, state dicts and action checks are the
classic envs' (:class:`~fastrl.envs.vector.ClassicVectorEnv`); what differs is set up here: the
spaces (the ``minatar`` package's), the int32 state row per env, and the kernels a step calls
(``fastrl._C.MinAtarBinding`` / ``torch.ops.fastrl.minatar_step`` or the PyTorch fallback).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector.utils import batch_space

from fastrl import _native
from fastrl.envs import _checks
from fastrl.envs.fallback import EnvTensors
from fastrl.envs.minatar.fallback import MinAtarTorchBinding
from fastrl.envs.minatar.games import GAMES
from fastrl.envs.minatar.render import frames
from fastrl.envs.minatar.spec import MinAtarSpec
from fastrl.envs.vector import ClassicVectorEnv


class MinAtarVectorEnv(ClassicVectorEnv):
    """``num_envs`` copies of a MinAtar game.

    Observations are bool ``[N, 10, 10, C]`` (the package's ``state()``), actions int ``[N]`` in
    ``[0, len(spec.action_set))``; ``step`` returns what ClassicVectorEnv's does. The state
    (``get_state``) is int32 ``[N, 1 + S]``: the last action taken (for sticky actions; kept
    across episodes, as the package keeps it), then the game's fields (``spec.fields``).
    """

    _RESET_OP, _STEP_OP = "minatar_reset", "minatar_step"

    def __init__(self, spec: MinAtarSpec, num_envs: int, device, dtype, seed, autoreset_mode,
                 max_episode_steps: int | None, params: dict, validate: bool, render_mode: str | None = None):
        self.metadata = {"autoreset_mode": autoreset_mode, "render_modes": ["rgb_array"]}
        self.render_mode, self._renderer = render_mode, None  # render() draws its frames itself

        # The package's spaces (minatar/gym.py BaseEnv).
        self.single_observation_space = gymnasium.spaces.Box(0.0, 1.0, shape=(10, 10, spec.channels), dtype=bool)
        self.single_action_space = gymnasium.spaces.Discrete(len(spec.action_set))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._discrete = True
        self._set_up(spec, num_envs, device, dtype, seed, autoreset_mode, max_episode_steps, params, validate,
                     torch.zeros(num_envs, spec.state_dim, dtype=torch.int32, device=device))

    _STATE_ENV_DIM = 0  # state int32 [N, 1 + S]

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        return self._fallback.game.observe(state[:, 1:])

    def _bind(self) -> None:
        tensors = self._op_tensors()
        self._binding = None
        if _native.native_compiled_for(self.device):
            self._binding = _native._C.MinAtarBinding(
                self.spec_.id, *tensors, self._param_list, self._op_max_episode_steps, self._same_step,
                first_env=self.first_env,
            )
        game = GAMES[self.spec_.game]()
        self._fallback = MinAtarTorchBinding(
            game, self.spec_.action_set, EnvTensors(*tensors), self.params["sticky_action_prob"],
            self.params["difficulty_ramping"], self.max_episode_steps, self._same_step, self.first_env,
        )  # fmt: skip

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One uint8 ``[10, 10, 3]`` frame per env of its current state (``render_mode="rgb_array"``):
        each cell in the ``minatar`` package's colour of its highest channel set (render.py); None,
        with gymnasium's warning, without a render mode."""
        if self.render_mode is None:
            gymnasium.logger.warn(f"{self!r} has no render_mode: make it with render_mode='rgb_array' to render")
            return None
        return frames(self._observe(self._state.long()))

    # -- state access ------------------------------------------------------------------------
    def get_state(self) -> torch.Tensor:
        """A copy of the states, int32 ``[N, 1 + S]``: last action, then ``spec_.fields``."""
        return self._state.clone()

    def set_state(self, state, elapsed_steps=None) -> None:
        """Sets every env's state (int ``[N, 1 + S]``, each field within its bounds) and elapsed
        steps (an int or ``[N]`` ints in [0, 2**31 - 1]; default 0), and starts counting returns
        from here; no env autoresets on the next step. Needs a reset first."""
        if not self._seeded:
            raise ResetNeeded("Cannot call env.set_state() before calling env.reset()")
        state = self._checked_state("state", state)
        elapsed = self._elapsed_tensor(0 if elapsed_steps is None else elapsed_steps)
        self._state.copy_(state)
        self._elapsed.copy_(elapsed)
        self._episode_return.zero_()
        self._autoreset.zero_()

    def load_state_dict(self, state: dict) -> None:
        if isinstance(state, dict) and isinstance(state.get("state"), torch.Tensor):
            if state["state"].dtype != torch.int32:
                raise ValueError(f"state_dict['state'] is {state['state'].dtype}, this env's is torch.int32")
            self._checked_state("state_dict['state']", state["state"], state.get("autoreset"))
        super().load_state_dict(state)

    def _checked_state(self, name: str, state, autoreset=None) -> torch.Tensor:
        """``state`` as int32 ``[N, 1 + S]`` on the env's device, each field within its bounds, and
        steppable, except where ``autoreset`` (bool ``[N]``) says the next step resets it."""
        state = torch.as_tensor(state, device=self.device)
        if state.dtype.is_floating_point or state.is_complex() or state.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got {state.dtype}")
        expected = (self.num_envs, self.spec_.state_dim)
        if tuple(state.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(state.shape)}")
        state = state.to(torch.int64)
        col = 0
        for f in self.spec_.fields:
            part = state[:, col : col + f.count]
            if bool(((part < f.low) | (part > f.high)).any()):
                raise ValueError(f"{name}: {self.spec_.game}'s {f.name} must be in [{f.low}, {f.high}], "
                                 f"got {part.flatten()[:8].tolist()}")
            col += f.count
        bad, why = GAMES[self.spec_.game]().unsteppable(state[:, 1:])
        if isinstance(autoreset, torch.Tensor) and autoreset.shape == bad.shape:
            bad = bad & ~autoreset.to(bad.device, torch.bool)
        if bool(bad.any()):
            raise ValueError(f"{name}: {why}; envs {bad.nonzero().flatten()[:8].tolist()}")
        return state.to(torch.int32)

    def __repr__(self) -> str:
        return f"MinAtarVectorEnv({self.spec_.id}, num_envs={self.num_envs}, device={self.device}, dtype={self.dtype})"


if _native._C is not None:
    # Fake kernels: output shapes and dtypes as allocated in csrc/ops/minatar.h.
    def _obs_shape(env: str):
        from fastrl.envs.minatar.spec import MINATAR_SPECS

        return (10, 10, MINATAR_SPECS[env].channels)

    @torch.library.register_fake("fastrl::minatar_reset")
    def _minatar_reset_fake(env, state, elapsed, episode_return, autoreset, resets, seeds, params):
        return state.new_empty(state.shape[0], *_obs_shape(env), dtype=torch.bool)

    @torch.library.register_fake("fastrl::minatar_step")
    def _minatar_step_fake(env, state, elapsed, episode_return, autoreset, resets, seeds, action,
                           params, max_episode_steps, same_step):
        n, shape = state.shape[0], _obs_shape(env)
        return (
            state.new_empty(n, *shape, dtype=torch.bool),
            episode_return.new_empty(n),
            state.new_empty(n, dtype=torch.bool),
            state.new_empty(n, dtype=torch.bool),
            state.new_empty(n, dtype=torch.bool),
            state.new_empty(n if same_step else 0, *shape, dtype=torch.bool),
            episode_return.new_empty(n),
            state.new_empty(n, dtype=torch.int32),
        )


def make_minatar(spec: MinAtarSpec, num_envs: int, device, dtype, seed, autoreset_mode, validate, env_kwargs: dict,
                 render_mode: str | None = None):
    """The MinAtar part of :func:`fastrl.envs.make`, after its common checks."""
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be None or 'rgb_array' for {spec.id}, got {render_mode!r}")
    max_episode_steps = _checks.max_episode_steps(env_kwargs.pop("max_episode_steps", None))
    unknown = set(env_kwargs) - set(spec.params)
    if unknown:
        raise TypeError(f"{spec.id} got unexpected keyword arguments {sorted(unknown)}; "
                        f"it takes max_episode_steps and {sorted(spec.params)}")
    params = dict(spec.params)
    if "sticky_action_prob" in env_kwargs:
        p = _checks.real("sticky_action_prob", env_kwargs["sticky_action_prob"])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {p}")
        params["sticky_action_prob"] = p
    if "difficulty_ramping" in env_kwargs:
        params["difficulty_ramping"] = _checks.flag("difficulty_ramping", env_kwargs["difficulty_ramping"])
    if validate is None:
        validate = device.type == "cpu"
    return MinAtarVectorEnv(spec, num_envs, device, dtype, seed, autoreset_mode, max_episode_steps, params, validate,
                            render_mode)
