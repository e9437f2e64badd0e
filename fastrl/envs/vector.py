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
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fastrl import _native
from fastrl.envs import _checks
from fastrl.envs.classic import CLASSIC, Classic
from fastrl.envs.rng import reset_uniforms


class ClassicVectorEnv(VectorEnv):
    """``num_envs`` copies of a classic-control env (see :func:`fastrl.envs.make`).

    ``step`` returns ``obs [N, O]``, ``reward [N]``, ``terminated [N]``, ``truncated [N]`` and
    ``info`` with, on the device: ``info["episode"]["r"]`` / ``["l"]`` the return and length of
    the episodes that ended at this step (0 elsewhere) and ``info["_episode"]`` their mask (like
    gymnasium's RecordEpisodeStatistics); with SAME_STEP autoreset also ``info["final_obs"]``
    (the observation each env reached before its reset) and ``info["_final_obs"]``.
    ``episode_returns`` / ``episode_lengths`` are the running ones (lengths saturate at
    2**31 - 1). ``max_episode_steps`` None means no time limit.
    """

    def __init__(self, spec: Classic, num_envs: int, device, dtype, seed, autoreset_mode,
                 max_episode_steps: int | None, params: dict, validate: bool):
        self.spec_ = spec
        self.num_envs = num_envs
        self.device = device
        self.dtype = dtype
        self.max_episode_steps = max_episode_steps
        # The native ops take 0 for "no time limit".
        self._op_max_episode_steps = 0 if max_episode_steps is None else max_episode_steps
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
        # Set by the first reset (and by load_state_dict): until then step raises ResetNeeded,
        # as gymnasium's envs do, rather than stepping all-zero states from unseeded streams.
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
            seed = _checks.seeds(seed, self.num_envs)
            self._seeds.copy_(torch.tensor(seed, dtype=torch.int64))  # an int fills every env's
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
        if not self._seeded:
            raise ResetNeeded("Cannot call env.step() before calling env.reset()")
        if not isinstance(actions, torch.Tensor):
            actions = self._as_tensor(actions)
        if _native.use_native(self.device):
            # Shapes, dtypes and devices are checked by the native call itself.
            if self._check_values_on_host:
                self._check_action_values(actions)
            if torch.compiler.is_compiling():
                out = torch.ops.fastrl.env_step(
                    self.spec_.id, *self._op_tensors(), actions, self._param_list,
                    self._op_max_episode_steps, self._same_step,
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
            self.spec_.id, *self._op_tensors(), self._param_list, self._op_max_episode_steps, self._same_step
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
    # Lengths saturate at 2**31 - 1 (core::advance): an int32 counter that never overflows.
    env._elapsed.clamp_(max=_checks.MAX_EPISODE_STEPS - 1).add_(1)
    length, ret = env._elapsed, env._episode_return.add_(reward)
    if env.max_episode_steps is None:
        trunc = torch.zeros_like(term)
    else:
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
