"""``fastrl rlhf ...`` commands; ``add_rlhf_parser`` registers them on the main parser. A bad
setting (a config value, an output path that cannot be a directory) is one line on stderr and
exit code 2, before any work."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from fastrl.rlhf.demo import DemoConfig, run_demo
    from fastrl.utils.rundir import RunDirError, RunLock, check_new_run, clear_run

    try:
        cfg = DemoConfig(algo=args.algo, out=args.out, seed=args.seed, device=args.device)
        check_new_run(cfg.out, overwrite=args.overwrite)  # an earlier run's files are never replaced silently
        with RunLock(cfg.out):
            if args.overwrite:
                clear_run(Path(cfg.out))
            summary = run_demo(cfg)
    except (ValueError, TypeError, OSError, RunDirError) as exc:
        print(f"fastrl rlhf demo: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    print(f"metrics: {args.out}/metrics.csv, plot: {args.out}/training.png")
    return 0


def add_rlhf_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``rlhf demo [--algo ppo|grpo] [--out DIR] [--seed S] [--device cpu|cuda]``."""
    rlhf = subparsers.add_parser("rlhf", help="RLHF: reward model, PPO and GRPO on a small GPT")
    sub = rlhf.add_subparsers(dest="rlhf_command", required=True)
    p = sub.add_parser("demo", help="offline demo: SFT, reward model from synthetic preferences, PPO/GRPO")
    p.add_argument("--algo", choices=["ppo", "grpo"], default="ppo")
    p.add_argument("--out", default="runs/rlhf-demo", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--seed", type=int, default=0, help="seed, in [0, 2**63)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.set_defaults(func=_demo)
    return rlhf
