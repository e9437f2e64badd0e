"""Batched classic-control environments on torch tensors, with gymnasium's VectorEnv API.

The whole batch lives on the device as a few tensors: the SoA state ``[S, N]``, elapsed steps,
running returns, autoreset flags and the Philox counters/keys of every env. A step is one native
call (physics + reward + termination + TimeLimit truncation + autoreset + episode statistics, in
place, no host sync) or, without native kernels for the device, the same semantics in PyTorch
(:class:`~fastrl.envs.fallback.TorchEnvBinding`). The native call is ``torch.ops.fastrl.env_step``
under ``torch.compile``, and otherwise the same kernel through ``fastrl._C.EnvBinding``, which binds
the env's tensors once: going through the dispatcher would cost more than stepping 1000 envs.
"""

from __future__ import annotations

import secrets

import gymnasium
import numpy as np
import torch
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fastrl import _native
from fastrl.envs import _checks
from fastrl.envs.classic import FALLBACKS
from fastrl.envs.fallback import EnvTensors, TorchEnvBinding
from fastrl.envs.registry import NATIVE_SPECS, NativeEnvSpec


class ClassicVectorEnv(VectorEnv):
    """``num_envs`` copies of a classic-control env (see :func:`fastrl.envs.make`).

    ``step`` returns ``obs [N, O]``, ``reward [N]``, ``terminated [N]``, ``truncated [N]`` and
    ``info`` with, on the device: ``info["episode"]["r"]`` / ``["l"]`` the return and length of
    the episodes that ended at this step (0 elsewhere) and ``info["_episode"]`` their mask (like
    gymnasium's RecordEpisodeStatistics); with SAME_STEP autoreset also ``info["final_obs"]``
    (the observation each env reached before its reset) and ``info["_final_obs"]``.
    ``episode_returns`` / ``episode_lengths`` are the running ones (lengths saturate at
    2**31 - 1). ``max_episode_steps`` None means no time limit. With ``render_mode="rgb_array"``,
    ``render()`` returns one frame per env, drawn by gymnasium's own renderer (needs pygame).
    """

    def __init__(self, spec: NativeEnvSpec, num_envs: int, device, dtype, seed, autoreset_mode,
                 max_episode_steps: int | None, params: dict, validate: bool, render_mode: str | None = None):
        reference = gymnasium.make(spec.id, **params).unwrapped
        self.metadata = {"autoreset_mode": autoreset_mode, "render_modes": ["rgb_array"],
                         "render_fps": reference.metadata.get("render_fps", 30)}
        self.render_mode = render_mode
        self._renderer = None  # gymnasium's env of the same id, made by the first render()
        obs_space, np_dtype = reference.observation_space, torch.empty(0, dtype=dtype).numpy().dtype
        self.single_observation_space = gymnasium.spaces.Box(
            obs_space.low.astype(np_dtype), obs_space.high.astype(np_dtype), dtype=np_dtype
        )
        self.single_action_space = reference.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._discrete = isinstance(self.single_action_space, gymnasium.spaces.Discrete)
        self._set_up(spec, num_envs, device, dtype, seed, autoreset_mode, max_episode_steps, params, validate,
                     torch.zeros(spec.state_dim, num_envs, dtype=dtype, device=device))

    def _set_up(self, spec, num_envs: int, device, dtype, seed, autoreset_mode, max_episode_steps: int | None,
                params: dict, validate: bool, state: torch.Tensor) -> None:
        """What every env on this front end sets up (the MinAtar envs too), after its spaces:
        the per-env tensors around ``state`` and the kernel bindings."""
        self.spec_ = spec
        self.num_envs = num_envs
        self.device = device
        self.dtype = dtype
        self.max_episode_steps = max_episode_steps
        # The native ops take 0 for "no time limit".
        self._op_max_episode_steps = 0 if max_episode_steps is None else max_episode_steps
        self.params = params
        self.validate = validate
        self._same_step = autoreset_mode == AutoresetMode.SAME_STEP
        self._param_list = spec.op_params(params)
        n, kw = num_envs, {"device": device}
        self._state = state
        self._elapsed = torch.zeros(n, dtype=torch.int32, **kw)
        self._episode_return = torch.zeros(n, dtype=dtype, **kw)
        self._autoreset = torch.zeros(n, dtype=torch.bool, **kw)
        self._resets = torch.zeros(n, dtype=torch.int64, **kw)
        self._seeds = torch.zeros(n, dtype=torch.int64, **kw)
        self._initial_seed = seed
        self._first_env = 0  # the global index of env 0 (first_env)
        # Set by the first reset (and by load_state_dict): until then step raises ResetNeeded,
        # as gymnasium's envs do, rather than stepping all-zero states from unseeded streams.
        self._seeded = False
        self._obs = None  # the observations last returned: a partial reset returns them for the other envs
        self._bind()
        # The CPU kernel checks action values in the same call; on a GPU that needs a host sync.
        self._check_values_on_host = validate and device.type != "cpu"

    @property
    def first_env(self) -> int:
        """The global index of env 0: env i draws its resets (and a MinAtar game its step draws)
        from the Philox stream (seed, first_env + i). A process stepping envs k..k+n-1 of a bigger
        batch (one rank's shard under torchrun) sets it to k, so its envs are those envs of the
        whole batch, whatever the split."""
        return self._first_env

    @first_env.setter
    def first_env(self, value: int) -> None:
        value = _checks.integer("first_env", value, 0, _checks.MAX_EPISODE_STEPS - self.num_envs)
        self._first_env = value
        self._bind()

    # The native ops a compiled reset / step calls (the MinAtar envs have their own).
    _RESET_OP, _STEP_OP = "env_reset", "env_step"
    _STATE_ENV_DIM = -1  # the state's env axis: [S, N] here, [N, 1 + S] for the MinAtar envs

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        """The observations of ``state`` (the fallback's physics: the kernels' values)."""
        return self._fallback.physics.observe(state)

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Resets every env. ``seed``: an int seeds env i with the Philox stream (seed, i); a list
        gives one seed per env; None continues the current streams (drawing a random seed the
        first time when ``make`` got none).

        ``options={"reset_mask": mask}`` (bools ``[N]``, numpy or torch, as gymnasium >= 1.1
        takes it) resets only the envs in ``mask`` (and seeds only those); the others keep their
        state, counters and pending autoreset, and their rows of the returned observations are the
        ones last returned. It needs a full reset first."""
        if self.closed:
            raise ClosedEnvironmentError(f"{self!r} is closed: make a new env")
        mask = _checks.reset_options(self.spec_.id, options).get("reset_mask")
        if mask is not None:
            mask = _checks.reset_mask(mask, self.num_envs, self.device)
            if not self._seeded:
                raise ResetNeeded("Cannot reset some envs (options['reset_mask']) before a full env.reset()")
            return self._reset_some(mask, seed), {}
        if seed is None and not self._seeded:
            seed = self._initial_seed if self._initial_seed is not None else secrets.randbits(63)
        if seed is not None:
            seed = _checks.seeds(seed, self.num_envs)
            self._seeds.copy_(torch.tensor(seed, dtype=torch.int64))  # an int fills every env's
            self._resets.zero_()
            self._seeded = True
        if _native.use_native(self.device):
            if torch.compiler.is_compiling():
                obs = getattr(torch.ops.fastrl, self._RESET_OP)(self.spec_.id, *self._op_tensors(), self._param_list,
                                                                **self._first_env_arg())
            else:
                obs = self._binding.reset()
        else:
            obs = self._fallback.reset()
        self._obs = obs
        return obs, {}

    def _reset_some(self, mask: torch.Tensor, seed) -> torch.Tensor:
        """Resets the envs in ``mask [N]``: a full reset (the kernels have no masked one; partial
        resets are rare), then the other envs' tensors put back as they were."""
        if seed is not None:
            seed = torch.tensor(_checks.seeds(seed, self.num_envs), dtype=torch.int64).to(self.device)
            self._seeds.copy_(torch.where(mask, seed, self._seeds))
            self._resets.masked_fill_(mask, 0)
        kept = [t.clone() for t in self._op_tensors()]
        # The other envs' observations: the ones last returned; after set_state or load_state_dict
        # the fallback's (the same values, or within rounding for Acrobot's and Pendulum's sin/cos).
        last = self._obs if self._obs is not None else self._observe(kept[0])
        obs, _ = self.reset()
        for i, (t, old) in enumerate(zip(self._op_tensors(), kept)):
            t.copy_(torch.where(_along(mask, t, self._STATE_ENV_DIM if i == 0 else 0), t, old))
        self._obs = torch.where(_along(mask, obs, 0), obs, last)
        return self._obs

    def step(self, actions):
        if self.closed:
            raise ClosedEnvironmentError(f"{self!r} is closed: make a new env")
        if not self._seeded:
            raise ResetNeeded("Cannot call env.step() before calling env.reset()")
        if not isinstance(actions, torch.Tensor):
            actions = self._as_tensor(actions)
        if _native.use_native(self.device):
            # Shapes, dtypes and devices are checked by the native call itself.
            if self._check_values_on_host:
                self._check_action_values(actions)
            if torch.compiler.is_compiling():
                out = getattr(torch.ops.fastrl, self._STEP_OP)(
                    self.spec_.id, *self._op_tensors(), actions, self._param_list,
                    self._op_max_episode_steps, self._same_step, **self._first_env_arg(),
                )
            else:
                out = self._binding.step(actions)
        else:
            out = self._fallback.step(self._check_action(actions))
        obs, reward, term, trunc, done, final_obs, ret, length = out
        self._obs = obs
        info = {"episode": {"r": ret, "l": length}, "_episode": done}
        if self._same_step:
            info["final_obs"] = final_obs
            info["_final_obs"] = done
        return obs, reward, term, trunc, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``[H, W, 3]`` uint8 frame per env (``render_mode="rgb_array"``), drawn by gymnasium's
        renderer of the same id from this env's state (so it needs pygame: the ``render`` extra);
        None, with gymnasium's warning, without a render mode."""
        if self.render_mode is None:
            gymnasium.logger.warn(f"{self!r} has no render_mode: make it with render_mode='rgb_array' to render")
            return None
        if self._renderer is None:
            self._renderer = gymnasium.make(self.spec_.id, render_mode=self.render_mode, **self.params).unwrapped
            self._renderer.reset(seed=0)  # sets what render() reads besides the state (Pendulum's last_u)
        frames = []
        for state in self._state.t().to("cpu", torch.float64, copy=True).numpy():
            self._renderer.state = state
            frames.append(self._renderer.render())
        return tuple(frames)

    def close_extras(self, **kwargs) -> None:
        """Closes the renderer (its pygame surface); ``step`` and ``reset`` then raise."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _bind(self) -> None:
        """Binds this env's tensors to its kernels: ``_binding`` the native ones (None without
        kernels for the device), ``_fallback`` the PyTorch ones (used when the backend says so)."""
        tensors = self._op_tensors()
        self._binding = None
        if _native.native_compiled_for(self.device):
            self._binding = _native._C.EnvBinding(
                self.spec_.id, *tensors, self._param_list, self._op_max_episode_steps, self._same_step,
                first_env=self.first_env,
            )
        physics = FALLBACKS[self.spec_.id](**self.params)
        self._fallback = TorchEnvBinding(physics, tensors, self.max_episode_steps, self._same_step, self.first_env)

    def _first_env_arg(self) -> dict:
        """The ops' first_env argument (left out at 0, its default)."""
        return {"first_env": self.first_env} if self.first_env else {}

    # copy.deepcopy and pickle: the bindings are rebuilt around the copied tensors.
    def __getstate__(self) -> dict:
        return self.__dict__ | {"_binding": None, "_fallback": None, "_renderer": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()

    def _op_tensors(self) -> EnvTensors:
        """The tensors the kernels step in place, in the native ops' order."""
        return EnvTensors(self._state, self._elapsed, self._episode_return, self._autoreset, self._resets, self._seeds)

    # -- state access ------------------------------------------------------------------------
    def get_state(self) -> torch.Tensor:
        """A copy of the states, ``[N, S]`` in the layout of gymnasium's ``env.unwrapped.state``."""
        return self._state.t().clone()

    def set_state(self, state, elapsed_steps=None) -> None:
        """Sets every env's state (``[N, S]``, gymnasium's ``env.unwrapped.state`` layout, finite)
        and its elapsed steps (an int or ``[N]`` ints in [0, 2**31 - 1]; default 0), and starts
        counting returns from here; no env autoresets on the next step. Needs a reset first, which
        seeds the streams the next autoresets draw from."""
        if not self._seeded:
            raise ResetNeeded("Cannot call env.set_state() before calling env.reset()")
        state = torch.as_tensor(state, device=self.device)
        if state.dtype == torch.bool or state.is_complex():
            raise TypeError(f"state must hold real numbers, got {state.dtype}")
        state = state.to(self.dtype)
        expected = (self.num_envs, self.spec_.state_dim)
        if tuple(state.shape) != expected:
            raise ValueError(f"state must have shape {expected}, got {tuple(state.shape)}")
        if not bool(torch.isfinite(state).all()):
            raise ValueError("state must be finite")
        elapsed = self._elapsed_tensor(0 if elapsed_steps is None else elapsed_steps)
        self._state.copy_(state.t())
        self._obs = None
        self._elapsed.copy_(elapsed)
        self._episode_return.zero_()
        self._autoreset.zero_()

    def _elapsed_tensor(self, x) -> torch.Tensor:
        """elapsed_steps as int32 [N]: an int, or integers of shape () or [N], in [0, 2**31 - 1]."""
        top = _checks.MAX_EPISODE_STEPS
        if _checks.is_int(x):
            x = _checks.integer("elapsed_steps", x, 0, top)
        if not isinstance(x, (int, list, tuple, np.ndarray, torch.Tensor)):
            raise TypeError(f"elapsed_steps must be an int or integers, got {type(x).__name__}")
        x = torch.as_tensor(x, device=self.device)
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"elapsed_steps must be an int or integers, got {x.dtype}")
        if x.dim() > 1 or (x.dim() == 1 and x.shape[0] != self.num_envs):
            raise ValueError(f"elapsed_steps must be an int or have shape ({self.num_envs},), got {tuple(x.shape)}")
        x = x.to(torch.int64)
        if bool(((x < 0) | (x > top)).any()):
            raise ValueError(f"elapsed_steps must be in [0, {top}], got {x.flatten()[:8].tolist()}")
        return x.to(torch.int32).expand(self.num_envs)

    def state_dict(self) -> dict:
        """Everything a step depends on (states, counters, RNG streams), for exact resume, and
        the env id, so that a state dict is loaded into the same kind of env only."""
        tensors = {k: getattr(self, "_" + k).clone() for k in self._STATE_KEYS}
        return tensors | {"seeded": self._seeded, "env_id": self.spec_.id}

    def load_state_dict(self, state: dict) -> None:
        """Loads a :meth:`state_dict` of an env of the same id, number of envs and dtype; refuses
        any other (naming what differs) before changing anything."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict (from state_dict()), got {type(state).__name__}")
        keys = {*self._STATE_KEYS, "seeded", "env_id"}
        if set(state) != keys:
            raise ValueError(f"state_dict must have the keys {sorted(keys)}: missing {sorted(keys - set(state))}, "
                             f"unexpected {sorted(set(state) - keys)}")
        if state["env_id"] != self.spec_.id:
            raise ValueError(f"state_dict is of {state['env_id']!r} envs, this env is {self.spec_.id!r}")
        if not isinstance(state["seeded"], bool):
            raise TypeError(f"state_dict['seeded'] must be a bool, got {type(state['seeded']).__name__}")
        for k in self._STATE_KEYS:
            x, mine = state[k], getattr(self, "_" + k)
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"state_dict[{k!r}] must be a torch.Tensor, got {type(x).__name__}")
            if x.shape != mine.shape:
                raise ValueError(f"state_dict[{k!r}] has shape {tuple(x.shape)}, this env's is {tuple(mine.shape)} "
                                 f"({self.num_envs} {self.spec_.id} envs)")
            if x.dtype != mine.dtype:
                raise ValueError(f"state_dict[{k!r}] is {x.dtype}, this env's is {mine.dtype}")
        if not bool(torch.isfinite(state["state"]).all()):
            raise ValueError("state_dict['state'] must be finite")
        for k in ("elapsed", "resets", "seeds"):
            if bool((state[k] < 0).any()):
                raise ValueError(f"state_dict[{k!r}] must be >= 0, got {state[k].flatten()[:8].tolist()}")
        for k in self._STATE_KEYS:
            getattr(self, "_" + k).copy_(state[k])
        self._seeded = state["seeded"]
        self._obs = None

    _STATE_KEYS = ("state", "elapsed", "episode_return", "autoreset", "resets", "seeds")

    @property
    def episode_returns(self) -> torch.Tensor:
        return self._episode_return.clone()

    @property
    def episode_lengths(self) -> torch.Tensor:
        return self._elapsed.clone()

    def __repr__(self) -> str:
        return f"ClassicVectorEnv({self.spec_.id}, num_envs={self.num_envs}, device={self.device}, dtype={self.dtype})"

    # -- checks --------------------------------------------------------------------------------
    def _as_tensor(self, actions) -> torch.Tensor:
        """numpy actions as a tensor on the env's device; anything else is refused."""
        return _checks.actions(self.spec_.id, actions, self.single_action_space, self.num_envs, self.device)

    def _check_action(self, actions: torch.Tensor) -> torch.Tensor:
        """The fallback's checks: the native ones (csrc/ops/envs.h, checked_action) in Python."""
        _checks.actions(self.spec_.id, actions, self.single_action_space, self.num_envs, self.device)
        if self.validate:
            self._check_action_values(actions)
        return actions.to(torch.int64 if self._discrete else self.dtype).contiguous()

    def _check_action_values(self, actions: torch.Tensor) -> None:
        """Discrete actions in range, continuous ones not NaN (a host sync on a GPU)."""
        _checks.action_values(self.spec_.id, actions, self.single_action_space)


if _native._C is not None:
    # Fake kernels: output shapes and dtypes as allocated in csrc/ops/envs.h.
    @torch.library.register_fake("fastrl::env_reset")
    def _env_reset_fake(env, state, elapsed, episode_return, autoreset, resets, seeds, params, first_env=0):
        return state.new_empty(state.shape[1], NATIVE_SPECS[env].obs_dim)

    @torch.library.register_fake("fastrl::env_step")
    def _env_step_fake(env, state, elapsed, episode_return, autoreset, resets, seeds, action,
                       params, max_episode_steps, same_step, first_env=0):
        n, o = state.shape[1], NATIVE_SPECS[env].obs_dim
        return (
            state.new_empty(n, o),
            state.new_empty(n),
            state.new_empty(n, dtype=torch.bool),
            state.new_empty(n, dtype=torch.bool),
            state.new_empty(n, dtype=torch.bool),
            state.new_empty(n if same_step else 0, o),
            state.new_empty(n),
            state.new_empty(n, dtype=torch.int32),
        )


def _along(mask: torch.Tensor, t: torch.Tensor, env_dim: int) -> torch.Tensor:
    """``mask [N]`` shaped to broadcast over ``t`` along its env axis ``env_dim``."""
    shape = [1] * t.dim()
    shape[env_dim] = -1
    return mask.view(shape)
