"""Batched classic-control environments on torch tensors, with gymnasium's VectorEnv API.

The whole batch lives on the device as a few tensors: the SoA state ``[S, N]``, elapsed steps,
running returns, autoreset flags and the Philox counters/keys of every env. A step is one native
call (physics + reward + termination + TimeLimit truncation + autoreset + episode statistics, in
place, no host sync) or, without native kernels for the device, the same semantics in PyTorch
(:func:`_fallback_step`). The native call is ``torch.ops.fastrl.env_step`` under
``torch.compile``, and otherwise the same kernel through ``fastrl._C.EnvBinding``, which binds the
env's tensors once: going through the dispatcher would cost more than stepping 1000 envs.
"""

from __future__ import annotations

import secrets

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fastrl import _native
from fastrl.envs.classic import CLASSIC, Classic
from fastrl.envs.rng import reset_uniforms


class ClassicVectorEnv(VectorEnv):
    """``num_envs`` copies of a classic-control env (see :func:`fastrl.envs.make`).

    ``step`` returns ``obs [N, O]``, ``reward [N]``, ``terminated [N]``, ``truncated [N]`` and
    ``info`` with, on the device: ``info["episode"]["r"]`` / ``["l"]`` the return and length of
    the episodes that ended at this step (0 elsewhere) and ``info["_episode"]`` their mask (like
    gymnasium's RecordEpisodeStatistics); with SAME_STEP autoreset also ``info["final_obs"]``
    (the observation each env reached before its reset) and ``info["_final_obs"]``.
    ``episode_returns`` / ``episode_lengths`` are the running ones.
    """

    def __init__(self, spec: Classic, num_envs: int, device, dtype, seed, autoreset_mode,
                 max_episode_steps: int, params: dict, validate: bool):
        self.spec_ = spec
        self.num_envs = num_envs
        self.device = device
        self.dtype = dtype
        self.max_episode_steps = max_episode_steps
        self.params = params
        self.validate = validate
        self.metadata = {"autoreset_mode": autoreset_mode}
        self._same_step = autoreset_mode == AutoresetMode.SAME_STEP
        self._param_list = [float(params[k]) for k in spec.params]

        reference = gymnasium.make(spec.id, **params).unwrapped
        obs_space, np_dtype = reference.observation_space, torch.empty(0, dtype=dtype).numpy().dtype
        self.single_observation_space = gymnasium.spaces.Box(
            obs_space.low.astype(np_dtype), obs_space.high.astype(np_dtype), dtype=np_dtype
        )
        self.single_action_space = reference.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._discrete = isinstance(self.single_action_space, gymnasium.spaces.Discrete)

        n, kw = num_envs, {"device": device}
        self._state = torch.zeros(spec.state_dim, n, dtype=dtype, **kw)
        self._elapsed = torch.zeros(n, dtype=torch.int32, **kw)
        self._episode_return = torch.zeros(n, dtype=dtype, **kw)
        self._autoreset = torch.zeros(n, dtype=torch.bool, **kw)
        self._resets = torch.zeros(n, dtype=torch.int64, **kw)
        self._seeds = torch.zeros(n, dtype=torch.int64, **kw)
        self._initial_seed = seed
        self._seeded = False
        self._binding = self._bind()
        # The CPU kernel checks action values in the same call; on a GPU that needs a host sync.
        self._check_values_on_host = validate and device.type != "cpu"

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Resets every env. ``seed``: an int seeds env i with the Philox stream (seed, i); a list
        gives one seed per env; None continues the current streams (drawing a random seed the
        first time when ``make`` got none)."""
        if options:
            raise ValueError(f"options are not supported by fastrl's {self.spec_.id}, got {options!r}")
        if seed is None and not self._seeded:
            seed = self._initial_seed if self._initial_seed is not None else secrets.randbits(63)
        if seed is not None:
            self._seeds.copy_(_seed_tensor(seed, self.num_envs))
            self._resets.zero_()
            self._seeded = True
        if _native.use_native(self.device):
            if torch.compiler.is_compiling():
                obs = torch.ops.fastrl.env_reset(self.spec_.id, *self._op_tensors(), self._param_list)
            else:
                obs = self._binding.reset()
        else:
            obs = _fallback_reset(self, torch.ones(self.num_envs, dtype=torch.bool, device=self.device), all_envs=True)
        return obs, {}

    def step(self, actions):
        if not isinstance(actions, torch.Tensor):
            actions = self._as_tensor(actions)
        if _native.use_native(self.device):
            # Shapes, dtypes and devices are checked by the native call itself.
            if self._check_values_on_host:
                self._check_action_values(actions)
            if torch.compiler.is_compiling():
                out = torch.ops.fastrl.env_step(
                    self.spec_.id, *self._op_tensors(), actions, self._param_list,
                    self.max_episode_steps, self._same_step,
                )
            else:
                out = self._binding.step(actions)
        else:
            out = _fallback_step(self, self._check_action(actions))
        obs, reward, term, trunc, done, final_obs, ret, length = out
        info = {"episode": {"r": ret, "l": length}, "_episode": done}
        if self._same_step:
            info["final_obs"] = final_obs
            info["_final_obs"] = done
        return obs, reward, term, trunc, info

    def _bind(self):
        """The native kernels with this env's tensors bound (None without kernels for the device)."""
        if not _native.native_compiled_for(self.device):
            return None
        return _native._C.EnvBinding(
            self.spec_.id, *self._op_tensors(), self._param_list, self.max_episode_steps, self._same_step
        )

    # copy.deepcopy and pickle: the binding is rebuilt around the copied tensors, and the spec
    # (whose fallback functions are lambdas) travels by name.
    def __getstate__(self) -> dict:
        return self.__dict__ | {"_binding": None, "spec_": self.spec_.id}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, spec_=CLASSIC[state["spec_"]])
        self._binding = self._bind()

    def _op_tensors(self) -> tuple[torch.Tensor, ...]:
        """The tensors the native ops step in place, in their order."""
        return self._state, self._elapsed, self._episode_return, self._autoreset, self._resets, self._seeds

    # -- state access ------------------------------------------------------------------------
    def get_state(self) -> torch.Tensor:
        """A copy of the states, ``[N, S]`` in the layout of gymnasium's ``env.unwrapped.state``."""
        return self._state.t().clone()

    def set_state(self, state, elapsed_steps=None) -> None:
        """Sets every env's state (``[N, S]``, gymnasium's ``env.unwrapped.state`` layout) and
        its elapsed steps (int or ``[N]``; default 0), and starts counting returns from here; no
        env autoresets on the next step."""
        state = torch.as_tensor(state, dtype=self.dtype, device=self.device)
        expected = (self.num_envs, self.spec_.state_dim)
        if tuple(state.shape) != expected:
            raise ValueError(f"state must have shape {expected}, got {tuple(state.shape)}")
        self._state.copy_(state.t())
        elapsed = 0 if elapsed_steps is None else elapsed_steps
        self._elapsed.copy_(torch.as_tensor(elapsed, dtype=torch.int32).expand(self.num_envs))
        self._episode_return.zero_()
        self._autoreset.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything a step depends on (states, counters, RNG streams), for exact resume."""
        return {k: getattr(self, "_" + k).clone() for k in self._STATE_KEYS} | {"seeded": self._seeded}

    def load_state_dict(self, state: dict) -> None:
        for k in self._STATE_KEYS:
            getattr(self, "_" + k).copy_(state[k])
        self._seeded = state["seeded"]

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
        if isinstance(actions, np.ndarray):
            return torch.from_numpy(actions).to(self.device)
        raise TypeError(f"actions must be a torch.Tensor, got {type(actions).__name__}")

    def _check_action(self, actions: torch.Tensor) -> torch.Tensor:
        """The fallback's checks: the native ones (csrc/ops/envs.h, checked_action) in Python."""
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device} but the env is on {self.device}")
        n = self.num_envs
        if self._discrete:
            if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
                raise TypeError(f"actions must be an integer tensor for {self.spec_.id}, got {actions.dtype}")
            if tuple(actions.shape) != (n,):
                raise ValueError(f"actions must have shape ({n},), got {tuple(actions.shape)}")
        else:
            if not actions.dtype.is_floating_point:
                raise TypeError(f"actions must be a floating-point tensor for {self.spec_.id}, got {actions.dtype}")
            if tuple(actions.shape) != (n, 1):
                raise ValueError(f"actions must have shape ({n}, 1), got {tuple(actions.shape)}")
        if self.validate:
            self._check_action_values(actions)
        return actions.to(torch.int64 if self._discrete else self.dtype).contiguous()

    def _check_action_values(self, actions: torch.Tensor) -> None:
        """Discrete actions in range, continuous ones not NaN (a host sync on a GPU)."""
        if self._discrete:
            k = self.single_action_space.n
            if bool(((actions < 0) | (actions >= k)).any()):
                raise ValueError(f"actions must be in [0, {k - 1}] for {self.spec_.id}, got {actions.tolist()[:8]}...")
        elif bool(torch.isnan(actions).any()):
            raise ValueError("actions contain NaN")


def _seed_tensor(seed, num_envs: int) -> torch.Tensor:
    seeds = [seed] * num_envs if isinstance(seed, int) else list(seed)
    if len(seeds) != num_envs or not all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds):
        raise ValueError(f"seed must be an int in [0, 2**63) or a list of {num_envs} of them, got {seed!r}")
    return torch.tensor(seeds, dtype=torch.int64)


def _fallback_reset(env: ClassicVectorEnv, mask: torch.Tensor, all_envs: bool = False) -> torch.Tensor:
    """Resets the envs in ``mask`` (core::reset_env); returns the observations of all envs.
    ``all_envs``: mask is all True (skips the selection)."""
    spec = env.spec_
    if all_envs:
        idx = torch.arange(env.num_envs, device=env.device)
        fresh = spec.reset(reset_uniforms(env._seeds, idx, env._resets, spec.reset_draws), env.dtype)
        env._state.copy_(fresh)
        env._resets += 1
        env._elapsed.zero_()
        env._episode_return.zero_()
        env._autoreset.zero_()
        return spec.observe(env._state)
    if env.device.type == "cpu":
        # Draw only for the envs that reset (about 1 in 20 per step): on the CPU the host knows
        # which, and Philox on all envs would cost 20 times more.
        # Index writes: masked_fill_ is several times slower on the CPU.
        idx = mask.nonzero().squeeze(1)
        if idx.numel():
            fresh = spec.reset(reset_uniforms(env._seeds[idx], idx, env._resets[idx], spec.reset_draws), env.dtype)
            env._state[:, idx] = fresh
            env._resets[idx] += 1
            env._elapsed[idx] = 0
            env._episode_return[idx] = 0
            env._autoreset[idx] = False
        return spec.observe(env._state)
    else:
        # On a GPU, drawing for all envs avoids a host sync.
        idx = torch.arange(env.num_envs, device=env.device)
        fresh = spec.reset(reset_uniforms(env._seeds, idx, env._resets, spec.reset_draws), env.dtype)
        env._state.copy_(torch.where(mask, fresh, env._state))
        env._resets += mask
    env._elapsed.masked_fill_(mask, 0)
    env._episode_return.masked_fill_(mask, 0)
    env._autoreset.masked_fill_(mask, False)
    return spec.observe(env._state)


def _fallback_step(env: ClassicVectorEnv, action: torch.Tensor):
    """env_step in PyTorch: the two passes of csrc/core/envs/batch.h on the whole batch, with the
    per-env tensors updated in place."""
    spec = env.spec_
    reward, term = spec.step(env.params, env._state, action, env._elapsed)
    env._elapsed += 1
    length, ret = env._elapsed, env._episode_return.add_(reward)
    trunc = length >= env.max_episode_steps
    done = term | trunc
    if env._same_step:
        reset_now = ended = done
        final_obs = spec.observe(env._state)
    else:
        reset_now = env._autoreset.clone()
        final_obs = torch.empty(0, spec.obs_dim, dtype=env.dtype, device=env.device)
        # The reset step has no reward and ends nothing.
        keep = ~reset_now
        reward = torch.where(keep, reward, 0.0)
        term, trunc = term & keep, trunc & keep
        ended = done & keep
        env._autoreset.copy_(ended)  # reset on the next step
    # ret * ended, with + 0.0 turning the -0.0 of negative returns into +0.0 (like torch.where,
    # and much faster than it or masked_fill on the CPU); returns are finite.
    final_return = ret * ended.to(ret.dtype) + 0.0
    final_length = length * ended
    obs = _fallback_reset(env, reset_now)
    return obs, reward, term, trunc, ended, final_obs, final_return, final_length


if _native._C is not None:
    # Fake kernels: output shapes and dtypes as allocated in csrc/ops/envs.h.
    @torch.library.register_fake("fastrl::env_reset")
    def _env_reset_fake(env, state, elapsed, episode_return, autoreset, resets, seeds, params):
        return state.new_empty(state.shape[1], CLASSIC[env].obs_dim)

    @torch.library.register_fake("fastrl::env_step")
    def _env_step_fake(env, state, elapsed, episode_return, autoreset, resets, seeds, action,
                       params, max_episode_steps, same_step):
        n, o = state.shape[1], CLASSIC[env].obs_dim
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
