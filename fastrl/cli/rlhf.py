"""``fastrl rlhf demo``: every field of :class:`fastrl.rlhf.demo.DemoConfig` is a flag, its nested
configs' fields too (``--ppo-batch-size``, ``--reward-epochs``, ``--model-n-layer``). A bad
setting (a config value, an output path that cannot be a directory) is one line on stderr and exit
code 2, before any work."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastrl.cli.flags import UsageError, add_config_flags, build_config, flag_values


def add_parser(sub) -> None:
    from fastrl.rlhf import demo

    rlhf = sub.add_parser("rlhf", help="RLHF: reward model, PPO and GRPO on a small GPT")
    commands = rlhf.add_subparsers(dest="rlhf_command", required=True)
    p = commands.add_parser("demo", help="offline demo: SFT, reward model from synthetic preferences, PPO/GRPO",
                            description="SFT of a small GPT on a synthetic task, a reward model from preferences "
                                        "labeled by a hidden rule, then PPO or GRPO (docs/RLHF.md). Every "
                                        "DemoConfig field is a flag, its nested configs' fields too.")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    add_config_flags(p, demo.DemoConfig)
    p.set_defaults(func=run, label="rlhf demo")


def run(args: argparse.Namespace) -> int:
    from fastrl.rlhf import demo
    from fastrl.utils.rundir import RunLock, check_new_run, clear_run

    try:
        cfg = build_config(demo.DemoConfig, flag_values(args, demo.DemoConfig))
        check_new_run(cfg.out, overwrite=args.overwrite)  # an earlier run's files are never replaced silently
        with RunLock(cfg.out):
            if args.overwrite:
                clear_run(Path(cfg.out))
            summary = demo.run_demo(cfg)
    except (ValueError, TypeError, OSError) as exc:  # a ConfigError, an --out that cannot be a directory
        raise UsageError(str(exc)) from None
    print(json.dumps(summary, indent=2))
    print(f"metrics: {cfg.out}/metrics.csv, plot: {cfg.out}/training.png")
    return 0
