"""Config validation for every config dataclass of fastrl: the trainers' (``fastrl.algos``) and
the RLHF ones (``fastrl.rlhf``, ``fastrl.nn.gpt.GPTConfig``).

Each dataclass field is checked against its annotation (``bool``, ``int``, ``float``, ``str``,
``tuple[int, ...]``, ``X | None``, or another config dataclass) and against the range a config
class declares for it in its ``field_rules``; a config class adds cross-field rules in
``check()``. Checked values are normalized (numpy numbers become Python numbers, lists become
tuples), so a checkpoint holds only plain types. Two ways to run it:

- :func:`validate_config` returns a checked copy (the trainers: their config is validated before
  any work, errors name the bare field, as the CLI flags do);
- :class:`SelfChecking` configs check themselves in place at construction and in ``validate()``
  (the RLHF configs: errors name ``Class.field``, since these configs nest).

A config class lists the fields it renamed in ``renamed`` (old name -> new name), so a saved
config (a checkpoint, a --config file) with an old name gets an error naming the new one, or, for
checkpoints, is read under the new names.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass
from typing import ClassVar

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
    """The closed (or, with ``*_open``, open) interval a number must lie in; infinities only
    with ``allow_inf`` (e.g. a gradient clip of inf: no clipping)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    text: str = ""  # how to say it, when the numbers alone do not read well
    allow_inf: bool = False

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
AT_LEAST_ONE = Range(1)
GRAD_CLIP = Range(0, low_open=True, allow_inf=True)  # a gradient-norm clip; inf: none
# Environments seed Philox streams with 63-bit seeds (fastrl.envs), torch takes up to 64 bits.
SEED = Range(0, 2**63, high_open=True, text="in [0, 2**63)")

Rule = Range | tuple  # a Range, or a tuple of the allowed values


def _merged(cls: type, attribute: str) -> dict:
    """A class attribute dict merged over the class and its bases (a subclass's entry wins)."""
    merged: dict = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get(attribute, {}))
    return merged


def field_rules(cls: type) -> dict[str, Rule]:
    """The ``field_rules`` of a config class and its bases."""
    return _merged(cls, "field_rules")


def renamed_fields(cls: type) -> dict[str, str]:
    """Old field name -> new name, of a config class and its bases."""
    return _merged(cls, "renamed")


def check_names(cls: type, names, where: str = "", label: str | None = None) -> None:
    """ConfigError unless every name is a field of ``cls`` (called ``label`` in the message); an
    old name's error names the new one."""
    fields = {f.name for f in dataclasses.fields(cls)}
    renamed = renamed_fields(cls)
    prefix = f"{where}: " if where else ""
    for name in names:
        if name not in fields and name in renamed:
            raise ConfigError(f"{prefix}{name} was renamed {renamed[name]}: write {renamed[name]} instead",
                              renamed[name])
    unknown = sorted(set(names) - fields)
    if unknown:
        raise ConfigError(f"{prefix}unknown config fields for {label or cls.__name__}: {unknown}")


def with_new_names(cls: type, values: dict) -> dict:
    """``values`` (a saved config) with every old field name of ``cls`` replaced by its new one."""
    renamed = renamed_fields(cls)
    return {renamed.get(k, k): v for k, v in values.items()}


def checked_values(config, qualified: bool = False) -> dict:
    """Every field of ``config`` checked and normalized; ConfigError naming the first bad field
    (as ``Class.field`` when ``qualified``)."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    rules = field_rules(cls)
    values = {}
    for f in dataclasses.fields(cls):
        name = f"{cls.__name__}.{f.name}" if qualified else f.name
        try:
            values[f.name] = check_field(name, getattr(config, f.name), hints[f.name], rules.get(f.name))
        except ConfigError as e:
            e.field = f.name
            raise
    return values


def validate_config(config):
    """A checked, normalized copy of ``config``; raises ConfigError naming the first bad field."""
    config = dataclasses.replace(config, **checked_values(config))
    config.check()
    return config


class SelfChecking:
    """A config dataclass checked in place at construction and by :meth:`validate` (run again when
    a trainer starts, so a field changed after construction is caught too). Subclasses add
    cross-field rules in :meth:`check`."""

    field_rules: ClassVar[dict[str, Rule]] = {}  # subclasses assign theirs (no annotation: not a field)
    renamed: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError, naming ``Class.field``, unless every field has a usable type and value."""
        for name, value in checked_values(self, qualified=True).items():
            setattr(self, name, value)
        self.check()

    def check(self) -> None:
        """Rules across fields (after the per-field checks)."""

    @classmethod
    def checked(cls, name: str, config):
        """A function's ``config`` argument (called ``name``): an instance of this class, validated
        now, before any work."""
        if not isinstance(config, cls):
            raise ConfigError(f"{name} must be a {cls.__name__}, got {type(config).__name__}", name)
        config.validate()
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
    if typing.get_origin(annotation) is dict:  # keyword arguments: str keys, plain scalar values
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table of keyword arguments, got {_show(value)}")
        kinds = typing.get_args(typing.get_args(annotation)[1])
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{name} keys must be strings, got {_show(key)}")
            if not (item is None or isinstance(item, tuple(k for k in kinds if k is not type(None)))):
                raise ConfigError(f"{name}[{key!r}] must be a number, a bool, a string or None, got {_show(item)}")
            if isinstance(item, float) and math.isnan(item):
                raise ConfigError(f"{name}[{key!r}] must not be NaN")
            out[key] = item
        return out
    if dataclasses.is_dataclass(annotation):  # a nested config: checked again, it may have changed
        if not isinstance(value, annotation):
            raise ConfigError(f"{name} must be a {annotation.__name__}, got {type(value).__name__}")
        value.validate()
        return value
    value = _convert(name, value, annotation, optional, isinstance(rule, Range) and rule.allow_inf)
    if isinstance(rule, Range) and value not in rule:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")
    if isinstance(rule, tuple) and value not in rule:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, rule))}, got {value!r}")
    return value


def _convert(name: str, value, annotation, optional: bool, allow_inf: bool):
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
            if math.isnan(value) or (math.isinf(value) and not allow_inf):
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


def check_device(device: str, name: str = "device") -> None:
    """ConfigError (naming ``name``) unless ``device`` is the CPU or a visible CUDA device."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"{name} must be cpu or cuda, got {device!r}", name)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{name}={device!r} but CUDA is not available to this torch ({torch.__version__})",
                              name)
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"{name}={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible",
                              name)
