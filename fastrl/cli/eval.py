"""``fastrl eval CHECKPOINT``: the mean and spread of the greedy policy's return."""

from __future__ import annotations

import argparse
import math

from fastrl.cli.flags import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint's greedy policy")
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory)")
    p.add_argument("--episodes", type=int, default=100, help="episodes to run, >= 1 (default 100)")
    p.add_argument("--seed", type=int, default=None,
                   help="evaluation seed, in [0, 2**63) (default: apart from training's)")
    p.add_argument("--device", default=None, help="override the device the checkpoint was trained on")
    p.set_defaults(func=run)


def print_eval(returns: list[float]) -> None:
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / n)
    print(f"eval: {n} episodes, return {mean:.1f} ± {std:.1f} (min {min(returns):.1f}, max {max(returns):.1f})")


def run(args: argparse.Namespace) -> int:
    from fastrl.algos import ALGOS
    from fastrl.algos.common import load_trainer_checkpoint
    from fastrl.utils.config import POSITIVE, SEED, check_device, check_field

    check_field("--episodes", args.episodes, int, POSITIVE)
    if args.seed is not None:
        check_field("--seed", args.seed, int, SEED)
    if args.device is not None:
        check_device(args.device)
    state, path = load_trainer_checkpoint(args.checkpoint)
    cls = ALGOS.get(state["algo"])
    if cls is None:
        raise UsageError(f"{path} holds a run of an unknown algorithm {state['algo']!r}")
    overrides = {"device": args.device} if args.device else {}
    trainer = cls.from_checkpoint(path, **overrides)
    print_eval(trainer.evaluate(args.episodes, seed=args.seed))
    return 0
