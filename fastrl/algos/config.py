"""Config validation shared by every trainer, run before any work starts.

Each dataclass field is checked against its annotation (``bool``, ``int``, ``float``, ``str``,
``tuple[int, ...]``, ``X | None``) and against the range a config class declares for it in its
``field_rules``; a config class adds cross-field rules in ``check()``. The validated config is a
normalized copy (numpy numbers become Python numbers, lists become tuples), so a checkpoint holds
only plain types.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass

import numpy as np
import torch


class ConfigError(ValueError, TypeError):
    """A config value a trainer cannot run with; the message names the field (``field``, when
    one field is at fault). A ValueError and a TypeError, so code that caught either from earlier
    checks still does."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Range:
    """The closed (or, with ``*_open``, open) interval a number must lie in."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    text: str = ""  # how to say it, when the numbers alone do not read well

    def __contains__(self, x) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)
# Environments seed Philox streams with 63-bit seeds (fastrl.envs), torch takes up to 64 bits.
SEED = Range(0, 2**63, high_open=True, text="in [0, 2**63)")

Rule = Range | tuple  # a Range, or a tuple of the allowed values


def field_rules(cls: type) -> dict[str, Rule]:
    """The ``field_rules`` of a config class and its bases (a subclass's rule wins)."""
    rules: dict[str, Rule] = {}
    for klass in reversed(cls.__mro__):
        rules.update(vars(klass).get("field_rules", {}))
    return rules


def validate_config(config):
    """A checked, normalized copy of ``config``; raises ConfigError naming the first bad field."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    rules = field_rules(cls)
    values = {}
    for f in dataclasses.fields(cls):
        try:
            values[f.name] = check_field(f.name, getattr(config, f.name), hints[f.name], rules.get(f.name))
        except ConfigError as e:
            e.field = f.name
            raise
    config = dataclasses.replace(config, **values)
    config.check()
    return config


def check_field(name: str, value, annotation, rule: Rule | None = None):
    """``value`` checked against its annotation and rule; returns it as a plain Python value."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional:
        if value is None:
            return None
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{name} must be a list of {item.__name__} values, got {_show(value)}")
        return tuple(check_field(f"{name}[{i}]", v, item, rule) for i, v in enumerate(value))
    value = _convert(name, value, annotation, optional)
    if isinstance(rule, Range) and value not in rule:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")
    if isinstance(rule, tuple) and value not in rule:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, rule))}, got {value!r}")
    return value


def _convert(name: str, value, annotation, optional: bool):
    wanted = _kind(annotation) + (" or None" if optional else "")
    is_bool = isinstance(value, (bool, np.bool_))
    if annotation is bool:
        if is_bool:
            return bool(value)
    elif annotation is int:
        if isinstance(value, numbers.Integral) and not is_bool:
            return int(value)
    elif annotation is float:
        if isinstance(value, numbers.Real) and not is_bool:
            try:
                value = float(value)
            except OverflowError:  # an int beyond float's range
                value = math.inf
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
            return value
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"cannot validate {name}: unsupported annotation {annotation!r}")
    raise ConfigError(f"{name} must be {wanted}, got {_show(value)}")


def _kind(annotation) -> str:
    return {bool: "true or false", int: "an int", float: "a number", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _show(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}", "device")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available to this torch ({torch.__version__})",
                              "device")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible",
                              "device")
