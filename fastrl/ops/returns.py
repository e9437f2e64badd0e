"""Generalized advantage estimation and discounted returns.

The two ``*_reference`` functions below are the specification: plain loops over time, one line
per equation. The native kernels (csrc/core/returns.h) follow them operation by operation, so
on the CPU they agree bit for bit; the PyTorch fallback *is* the reference.

Termination vs truncation: ``terminated`` means the episode really ended (no bootstrap);
``done`` means the rollout must not carry advantages across this step (terminated or
truncated). For a truncated step, ``next_values`` must hold the value of the final observation,
which is what :func:`rollout_next_values` builds from a rollout.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from fastrl import _native
from fastrl.ops import _checks

__all__ = [
    "Advantages",
    "gae",
    "discounted_returns",
    "rollout_next_values",
    "gae_reference",
    "discounted_returns_reference",
]


class Advantages(NamedTuple):
    """What :func:`gae` returns."""

    advantages: torch.Tensor
    returns: torch.Tensor  # advantages + values


def _masked_step(value, carry, mask, t):
    """(next carry, output) of step t of a backward recurrence: a masked step outputs 0 and passes
    the carry through unchanged."""
    if mask is None:
        return value, value
    return torch.where(mask[t], value, carry), torch.where(mask[t], value, 0)


def gae_reference(rewards, values, next_values, terminated, done, gamma, lam, mask=None):
    """GAE on time-major ``[T, ...]`` tensors with bool flags. Returns (advantages, returns).

    delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}      (A_T = 0)
    Masked steps get A_t = 0 and pass A_{t+1} through unchanged.
    """
    advantages = torch.empty_like(rewards)
    carry = rewards.new_zeros(rewards.shape[1:])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * torch.where(terminated[t], 0, next_values[t]) - values[t]
        a = delta + (gamma * lam) * torch.where(done[t], 0, carry)
        carry, advantages[t] = _masked_step(a, carry, mask, t)
    return advantages, advantages + values


def discounted_returns_reference(rewards, done, gamma, bootstrap, mask=None):
    """G_t = r_t + gamma * (1 - done_t) * G_{t+1} with G_T = bootstrap, on time-major tensors.

    Masked steps get G_t = 0 and pass G_{t+1} through unchanged.
    """
    returns = torch.empty_like(rewards)
    carry = bootstrap.clone()
    for t in reversed(range(rewards.shape[0])):
        g = rewards[t] + gamma * torch.where(done[t], 0, carry)
        carry, returns[t] = _masked_step(g, carry, mask, t)
    return returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    lam: float,
    mask: torch.Tensor | None = None,
    time_dim: int = 0,
) -> Advantages:
    """Generalized advantage estimation (Schulman et al. 2016). Returns
    ``Advantages(advantages, returns)`` with ``returns = advantages + values``.

    Args:
        rewards, values, next_values: float tensors of one shape, time along ``time_dim`` and any
            number of batch dims. ``next_values[t]`` is V(s_{t+1}); for a truncated step it is the
            value of the final observation (see :func:`rollout_next_values`).
        terminated: bool (or 0/1) — the episode ended at t: no bootstrap from ``next_values``.
        done: bool (or 0/1) — terminated or truncated at t: advantages do not flow across t.
        gamma, lam: discount and GAE lambda in [0, 1].
        mask: optional bool, False for padding (RLHF): advantage 0 there, and the recurrence
            passes through so the last valid token links to the next valid one.
        time_dim: 0 for time-major ``[T, *batch]``, 1 or -1 for batch-first layouts.

    Computed in float64 if any input is float64, else float32 (so half and bfloat16 inputs are
    computed and returned in float32). Inputs are treated as constants (no gradient flows).
    """
    _checks.floating("rewards", rewards)
    for name, x in (("values", values), ("next_values", next_values)):
        _checks.floating(name, x)
        _checks.same_shape(name, x, "rewards", rewards)
        _checks.same_device(name, x, "rewards", rewards)
    terminated = _checks.flag("terminated", terminated, "rewards", rewards)
    done = _checks.flag("done", done, "rewards", rewards)
    if mask is not None:
        mask = _checks.flag("mask", mask, "rewards", rewards)
    gamma = _checks.unit_interval("gamma", gamma)
    lam = _checks.unit_interval("lam", lam)
    dim = _checks.time_dim(time_dim, "rewards", rewards.ndim)
    dtype = _checks.compute_dtype(rewards, values, next_values)

    layout = _Columns(rewards, dim)
    r, v, nv = (layout.to_columns(x.detach().to(dtype)) for x in (rewards, values, next_values))
    term, dn = layout.to_columns(terminated), layout.to_columns(done)
    m = None if mask is None else layout.to_columns(mask)
    if _native.use_native(rewards.device):
        adv, ret = _native.call("gae", r, v, nv, term, dn, m, gamma, lam)
    else:
        adv, ret = gae_reference(r, v, nv, term, dn, gamma, lam, m)
    return Advantages(layout.from_columns(adv), layout.from_columns(ret))


def discounted_returns(
    rewards: torch.Tensor,
    done: torch.Tensor | None,
    gamma: float,
    bootstrap: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    time_dim: int = 0,
) -> torch.Tensor:
    """Discounted returns ``G_t = r_t + gamma * (1 - done_t) * G_{t+1}`` (reward-to-go).

    Args:
        rewards: float tensor, time along ``time_dim``, any batch dims.
        done: bool (or 0/1) like ``rewards`` — no return flows across t; None: no episode ends.
        gamma: discount in [0, 1].
        bootstrap: the return after the last step, shaped like ``rewards`` without its time dim
            (e.g. the value of the last observation, or an n-step target); default 0.
        mask: optional bool, False for padding: G_t = 0 there and the recurrence passes through.
        time_dim: 0 for time-major ``[T, *batch]``, 1 or -1 for batch-first.
    """
    _checks.floating("rewards", rewards)
    dim = _checks.time_dim(time_dim, "rewards", rewards.ndim)
    if done is None:
        done = torch.zeros(rewards.shape, dtype=torch.bool, device=rewards.device)
    done = _checks.flag("done", done, "rewards", rewards)
    if mask is not None:
        mask = _checks.flag("mask", mask, "rewards", rewards)
    gamma = _checks.unit_interval("gamma", gamma)
    batch_shape = rewards.shape[:dim] + rewards.shape[dim + 1 :]
    dtype = _checks.compute_dtype(rewards)
    if bootstrap is None:
        bootstrap = torch.zeros(batch_shape, dtype=dtype, device=rewards.device)
    _checks.floating("bootstrap", bootstrap)
    if bootstrap.shape != batch_shape:
        raise ValueError(
            f"bootstrap must have the batch shape of rewards {tuple(batch_shape)}, got {tuple(bootstrap.shape)}"
        )
    _checks.same_device("bootstrap", bootstrap, "rewards", rewards)
    dtype = _checks.compute_dtype(rewards, bootstrap)

    layout = _Columns(rewards, dim)
    r = layout.to_columns(rewards.detach().to(dtype))
    dn = layout.to_columns(done)
    m = None if mask is None else layout.to_columns(mask)
    boot = bootstrap.detach().to(dtype).reshape(layout.columns)
    if _native.use_native(rewards.device):
        ret = _native.call("discounted_returns", r, dn, boot.contiguous(), m, gamma)
    else:
        ret = discounted_returns_reference(r, dn, gamma, boot, m)
    return layout.from_columns(ret)


def rollout_next_values(
    values: torch.Tensor,
    last_value: torch.Tensor,
    final_values: torch.Tensor | None = None,
    final_mask: torch.Tensor | None = None,
    time_dim: int = 0,
) -> torch.Tensor:
    """``next_values`` for :func:`gae` from the usual rollout: ``values`` shifted by one step
    along time, with ``last_value`` (V of the observation after the last step) at the end.

    Where an episode was cut (``final_mask[t]``), the observation after step t is already the
    reset one, so the value of the real final observation is taken from ``final_values[t]``
    (gymnasium's SAME_STEP autoreset ``info["final_obs"]``).
    """
    _checks.floating("values", values)
    dim = _checks.time_dim(time_dim, "values", values.ndim)
    moved = values.movedim(dim, 0)
    _checks.floating("last_value", last_value)
    if last_value.shape != moved.shape[1:]:
        raise ValueError(
            f"last_value must have the batch shape of values {tuple(moved.shape[1:])}, got {tuple(last_value.shape)}"
        )
    _checks.same_device("last_value", last_value, "values", values)
    if (final_values is None) != (final_mask is None):
        raise ValueError("final_values and final_mask go together: pass both or neither")
    if final_values is not None:
        _checks.floating("final_values", final_values)
        _checks.same_shape("final_values", final_values, "values", values)
        _checks.same_device("final_values", final_values, "values", values)
        final_mask = _checks.flag("final_mask", final_mask, "values", values)
    # [:T]: an empty rollout (T = 0) has no next values, not just last_value
    nxt = torch.cat([moved[1:], last_value.unsqueeze(0).to(moved.dtype)])[: moved.shape[0]]
    nxt = nxt.movedim(0, dim)
    if final_values is not None:
        nxt = torch.where(final_mask, final_values.to(nxt.dtype), nxt)
    return nxt


class _Columns:
    """Moves time to dim 0 and flattens the batch dims: ``[*] -> [T, N]`` (a view when it can)."""

    def __init__(self, like: torch.Tensor, dim: int):
        self.dim = dim
        moved = like.movedim(dim, 0).shape
        self.moved_shape = moved
        self.columns = math.prod(moved[1:])

    def to_columns(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(self.dim, 0).reshape(self.moved_shape[0], self.columns)

    def from_columns(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.moved_shape).movedim(0, self.dim)


# Fake kernels: shapes and strides of the outputs (like empty_like in csrc/ops/returns.h), so
# torch.compile and opcheck can trace the ops without running them.


def _gae_fake(rewards, *_):
    return torch.empty_like(rewards), torch.empty_like(rewards)


def _discounted_returns_fake(rewards, *_):
    return torch.empty_like(rewards)


_native.register_op("gae", fake=_gae_fake)
_native.register_op("discounted_returns", fake=_discounted_returns_fake)
