"""Argument checks shared by the op wrappers: every error names the argument at fault and is
raised before any kernel runs."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def floating(name: str, x) -> torch.Tensor:
    tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def same_shape(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(x.shape)}")


def same_device(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {ref.device}")


def flag(name: str, x, ref_name: str, ref: torch.Tensor) -> torch.Tensor:
    """A bool-like tensor (bool, integer or float; nonzero means set) shaped like ref, as bool."""
    tensor(name, x)
    same_shape(name, x, ref_name, ref)
    same_device(name, x, ref_name, ref)
    if x.is_complex():
        raise TypeError(f"{name} must be bool, integer or floating, got {x.dtype}")
    return x if x.dtype == torch.bool else x != 0


def unit_interval(name: str, x) -> float:
    if torch.compiler.is_compiling():
        return _traced_number(name, x, low=0.0, high=1.0)
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if math.isnan(x) or not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {x}")
    return x


def _traced_number(name: str, x, *, low: float, high: float = math.inf, low_inclusive: bool = True):
    """The checks of a number under torch.compile, where a float argument that changes between
    calls is symbolic: testing it in Python (math.isnan, float()) would break the graph or compile
    one graph per value. torch._check turns the bounds into a guard on a range instead: values
    inside reuse the graph; one outside fails the guard, and the retrace raises this message.
    (A NaN fails any bound; with no bound at all, e.g. kl_coef, it passes unseen here.)"""
    if isinstance(x, bool) or not isinstance(x, (Real, torch.SymInt, torch.SymFloat)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if low > -math.inf:
        op = ">=" if low_inclusive else ">"
        torch._check(x >= low if low_inclusive else x > low, lambda: f"{name} must be {op} {low}")
    if high < math.inf:
        torch._check(x <= high, lambda: f"{name} must be <= {high}")
    return x


def shape(name: str, x: torch.Tensor, expected) -> None:
    if x.shape != expected:
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def broadcasts_to(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """x broadcasts to ref's shape without enlarging it (``[D]`` or ``[1, D]`` against ``[N, D]``)."""
    try:
        ok = torch.broadcast_shapes(x.shape, ref.shape) == ref.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must broadcast to the shape of {ref_name} {tuple(ref.shape)}, got {tuple(x.shape)}")


def time_dim(x: int, name: str, ndim: int) -> int:
    """A valid time dimension of the ``ndim``-dim tensor called ``name``, made non-negative."""
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"time_dim must be an int, got {type(x).__name__}")
    if ndim == 0:
        raise ValueError(f"{name} must have a time dimension, got a 0-dim tensor")
    if not -ndim <= x < ndim:
        raise ValueError(f"time_dim must be in [{-ndim}, {ndim - 1}] for {ndim}-dim {name}, got {x}")
    return x % ndim


def compute_dtype(*xs: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half and bfloat16 are computed in fp32)."""
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def integer(name: str, x) -> torch.Tensor:
    tensor(name, x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    return x


def number(name: str, x, *, low: float, low_inclusive: bool = True) -> float:
    """A real number >= low (> low when not low_inclusive)."""
    if torch.compiler.is_compiling():
        return _traced_number(name, x, low=low, low_inclusive=low_inclusive)
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if math.isnan(x) or x < low or (x == low and not low_inclusive):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {x}")
    return x


def positive_int(name: str, x) -> int:
    """A positive integer (numpy integers too)."""
    if isinstance(x, bool) or not isinstance(x, Integral) or x < 1:
        raise ValueError(f"{name} must be a positive int, got {x!r}")
    return int(x)


def choice(name: str, x, choices: tuple[str, ...]) -> str:
    if x not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {x!r}")
    return x
