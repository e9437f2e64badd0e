"""Checks of the RLHF configs: each config's ``validate()`` runs at construction
(``__post_init__``) and again when a trainer starts, so a field changed after construction is
caught too. Every error names the config and the field, e.g. ``PPOConfig.lr must be > 0, got 0``.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real

SEED_LIMIT = 2**63
"""Seeds are ints in [0, 2**63): torch seeds are 64-bit, and the demo adds small offsets."""


def _name(cfg, field: str) -> str:
    return f"{type(cfg).__name__}.{field}"


def integer(cfg, field: str, low: int, high: int | None = None) -> None:
    """An int (numpy ints too, not bool) in [low, high); stored back as a Python int."""
    value = getattr(cfg, field)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{_name(cfg, field)} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {'2**63' if high == SEED_LIMIT else high})"
        raise ValueError(f"{_name(cfg, field)} must be {bound}, got {value}")
    setattr(cfg, field, value)


def real(cfg, field: str, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
         high_open: bool = False, allow_inf: bool = False, optional: bool = False) -> None:  # fmt: skip
    """A real number (int or float, not bool), finite unless ``allow_inf``, in the interval
    ``[low, high]`` (ends open as asked); ``None`` passes when ``optional``. Stored as a float."""
    value = getattr(cfg, field)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        kind = "a number or None" if optional else "a number"
        raise TypeError(f"{_name(cfg, field)} must be {kind}, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{_name(cfg, field)} must be a finite number, got {value}") from None
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{_name(cfg, field)} must be a finite number, got {value}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        if high == math.inf:
            bound = f"{'>' if low_open else '>='} {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{_name(cfg, field)} must be {bound}, got {value:g}")
    setattr(cfg, field, value)


def boolean(cfg, field: str) -> None:
    value = getattr(cfg, field)
    if not isinstance(value, bool):
        raise TypeError(f"{_name(cfg, field)} must be True or False, got {type(value).__name__} {value!r}")


def choice(cfg, field: str, choices) -> None:
    value = getattr(cfg, field)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{_name(cfg, field)} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def seed(cfg, field: str = "seed") -> None:
    integer(cfg, field, 0, SEED_LIMIT)


def nested(cfg, field: str, cls: type) -> None:
    """A sub-config of type ``cls``, validated again (it may have changed since construction)."""
    value = getattr(cfg, field)
    if not isinstance(value, cls):
        raise TypeError(f"{_name(cfg, field)} must be a {cls.__name__}, got {type(value).__name__}")
    value.validate()


def config(name: str, cfg, cls: type):
    """A trainer's ``cfg`` argument: an instance of ``cls``, validated now (before any work)."""
    if not (dataclasses.is_dataclass(cfg) and isinstance(cfg, cls)):
        raise TypeError(f"{name} must be a {cls.__name__}, got {type(cfg).__name__}")
    cfg.validate()
    return cfg
