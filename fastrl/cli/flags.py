"""The flag generator every command is built with: one flag per config dataclass field, typed
from its annotation, documented by its docstring; a nested config's fields get flags prefixed
with its name (``DemoConfig.ppo.batch_size`` is ``--ppo-batch-size``)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import typing
from pathlib import Path

_COMMON_FLAGS = {"env_id": "--env"}  # the short spelling of the most used flag


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


def flag(name: str) -> str:
    """The flag of a config field: ``num_envs`` -> ``--num-envs``; ``ppo.batch_size`` -> ``--ppo-batch-size``."""
    return _COMMON_FLAGS.get(name, "--" + name.replace("_", "-").replace(".", "-"))


def as_flag(name: str, value) -> str:
    """The flag as typed: ``--num-envs 4``, ``--no-anneal-lr``, ``--hidden 64 64``."""
    if isinstance(value, bool):
        return flag(name) if value else "--no-" + flag(name)[2:]
    return f"{flag(name)} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"


class _RenamedFlag(argparse.Action):
    """The flag of a renamed config field: recorded, and refused by :func:`flag_values` in one line
    naming the new flag (``const``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.renamed_flag = (option_string, self.const)


def _json_object(name: str):
    """argparse type of a dict field: a JSON object, e.g. '{"max_episode_steps": 200}'."""

    def parse(text: str) -> dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"{name} must be a JSON object: {e}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{name} must be a JSON object, got {text!r}")
        return value

    return parse


def _or_none(base: type):
    """argparse type of an optional field (``X | None``): ``none`` is None, anything else an X."""

    def parse(text: str):
        return None if text.lower() == "none" else base(text)

    parse.__name__ = base.__name__  # argparse names the type in its error: "invalid float value"
    return parse


def _nested(kind) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def add_config_flags(parser, config_cls: type, tuned: dict | None = None, *, prefix: str = "",
                     defaults=None) -> None:
    """One flag per field of ``config_cls``. A flag the user did not type sets nothing (argparse's
    SUPPRESS), so that only typed flags override the config; an optional field's flag takes
    ``none`` for None. The help shows the default (of ``defaults``, an instance, when given:
    a nested config's default is its parent's). ``tuned``: env id -> the values tuned for it (a
    tuned value replaces the default for that env), shown in each flag's help. A nested config
    gets a group of flags ``--<field>-<its field>``. The flags of renamed fields are hidden and
    refused, naming the new flag."""
    from fastrl.algos.common import field_docs
    from fastrl.utils.config import Range, field_rules, renamed_fields

    docs = field_docs(config_cls)
    rules = field_rules(config_cls)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        name, kind, rule = prefix + f.name, hints[f.name], rules.get(f.name)
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
        if _nested(kind):
            # a group of its own in --help (argparse groups do not nest: deeper ones share it)
            group = parser if prefix else parser.add_argument_group(f"{flag(name)}-*", docs.get(f.name))
            add_config_flags(group, kind, prefix=name + ".", defaults=default)
            continue
        if isinstance(default, dict):
            default = json.dumps(default)
        allowed = f"; {rule}" if isinstance(rule, Range) else ""
        per_env = ", ".join(f"{env} {values[f.name]}" for env, values in (tuned or {}).items() if f.name in values)
        per_env = f"; tuned: {per_env}" if per_env else ""
        help_ = f"{docs.get(f.name, '')} (default: {default}{per_env}{allowed})"
        args = typing.get_args(kind)
        unset = argparse.SUPPRESS
        if kind is bool:
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=unset, help=help_)
        elif typing.get_origin(kind) is dict:
            parser.add_argument(flag(name), dest=name, type=_json_object(flag(name)), default=unset, help=help_,
                                metavar="JSON")
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag(name), dest=name, type=args[0], nargs="+", default=unset, help=help_)
        else:
            base = next((a for a in args if a is not type(None)), kind)  # X | None -> X
            choices = rule if isinstance(rule, tuple) else None
            metavar = None if choices else base.__name__.upper() + ("|none" if type(None) in args else "")
            parser.add_argument(flag(name), dest=name, type=_or_none(base) if type(None) in args else base,
                                default=unset, help=help_, choices=choices, metavar=metavar)
    parser.set_defaults(renamed_flag=None)
    for old, new in renamed_fields(config_cls).items():
        parser.add_argument(flag(prefix + old), action=_RenamedFlag, const=flag(prefix + new), nargs="*",
                            help=argparse.SUPPRESS)
        if hints[new] is bool:
            parser.add_argument("--no-" + flag(prefix + old)[2:], action=_RenamedFlag,
                                const="--no-" + flag(prefix + new)[2:], nargs="*", help=argparse.SUPPRESS)


def flag_values(args: argparse.Namespace, config_cls: type, *, prefix: str = "") -> dict:
    """The fields the user set by flags, ``{field: value}``; a nested config's as a dict of its own.
    A renamed field's flag is refused, naming the new one."""
    if prefix == "" and getattr(args, "renamed_flag", None):
        old, new = args.renamed_flag
        raise UsageError(f"{old} was renamed {new}: use {new}")
    hints = typing.get_type_hints(config_cls)
    values = {}
    for f in dataclasses.fields(config_cls):
        name = prefix + f.name
        if _nested(hints[f.name]):
            nested = flag_values(args, hints[f.name], prefix=name + ".")
            if nested:
                values[f.name] = nested
        elif hasattr(args, name):  # typed on the command line
            values[f.name] = getattr(args, name)
    return values


def build_config(config_cls: type, values: dict, base=None):
    """``config_cls`` from ``values`` (as :func:`flag_values` gives them) over ``base`` (an instance;
    default: the defaults): a nested config's values replace only the fields they name."""
    base = config_cls() if base is None else base
    for name, value in values.items():
        if isinstance(value, dict) and dataclasses.is_dataclass(getattr(base, name)):
            values = {**values, name: build_config(type(getattr(base, name)), value, getattr(base, name))}
    return dataclasses.replace(base, **values)


def read_config_file(path: str) -> dict:
    """The table of config fields in a JSON or TOML (``.toml``) file; UsageError in one line
    naming the file otherwise."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
        import tomli as tomllib

    where = f"--config {path}"
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{where}: is a directory, not a JSON or TOML file") from None
    except OSError as e:
        raise UsageError(f"{where}: cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: not UTF-8 text (byte {e.start})") from None
    if path.endswith(".toml"):
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{where}: invalid TOML: {e}") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            hint = ""
            with contextlib.suppress(tomllib.TOMLDecodeError):
                tomllib.loads(text)
                hint = "; it reads as TOML: name the file .toml"
            raise UsageError(f"{where}: invalid JSON: {e}{hint}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{where}: must hold a table of config fields (a JSON object), "
                         f"not a {type(values).__name__}")
    return values
