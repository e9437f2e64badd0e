"""``fastrl eval CHECKPOINT``: the mean and spread of the greedy policy's return. Its options are
:class:`EvalOptions`, made flags by the same generator as every other command's."""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import dataclass

from fastrl.cli.flags import UsageError, add_config_flags, build_config, flag, flag_values
from fastrl.utils.config import POSITIVE, SEED


@dataclass
class EvalOptions:
    episodes: int = 100
    """Episodes to run."""
    seed: int | None = None
    """Evaluation seed (None: one apart from training's)."""
    device: str | None = None
    """Device to run on (None: the one the checkpoint was trained on)."""

    field_rules = {"episodes": POSITIVE, "seed": SEED}


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint's greedy policy")
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory)")
    add_config_flags(p, EvalOptions)
    p.set_defaults(func=run)


def print_eval(returns: list[float]) -> None:
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / n)
    print(f"eval: {n} episodes, return {mean:.1f} ± {std:.1f} (min {min(returns):.1f}, max {max(returns):.1f})")


def run(args: argparse.Namespace) -> int:
    from fastrl.algos import ALGOS
    from fastrl.algos.common import load_trainer_checkpoint
    from fastrl.utils.config import check_device, check_field, field_rules

    values = flag_values(args, EvalOptions)
    hints, rules = typing.get_type_hints(EvalOptions), field_rules(EvalOptions)
    for name, value in values.items():  # errors name the flag: "--episodes must be > 0, got 0"
        check_field(flag(name), value, hints[name], rules.get(name))
    options = build_config(EvalOptions, values)
    if options.device is not None:
        check_device(options.device)
    state, path = load_trainer_checkpoint(args.checkpoint)
    cls = ALGOS.get(state["algo"])
    if cls is None:
        raise UsageError(f"{path} holds a run of an unknown algorithm {state['algo']!r}")
    overrides = {"device": options.device} if options.device else {}
    trainer = cls.from_checkpoint(path, **overrides)
    print_eval(trainer.evaluate(options.episodes, seed=options.seed))
    return 0
