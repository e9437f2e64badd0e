"""The ``fastrl`` command.

    fastrl train ppo --env CartPole-v1 --out runs/ppo    train (every config field is a flag)
    fastrl train ppo --resume runs/ppo --total-steps N   continue a run exactly where it stopped
    fastrl eval runs/ppo/checkpoint.pt --episodes 100    mean and std of the greedy policy's return
    fastrl rlhf demo --algo ppo                          offline RLHF: SFT, reward model, PPO/GRPO/...
    fastrl rlhf train grpo --config run.toml             RLHF on your own model, prompts and rewards
    fastrl export runs/ppo --out policy.pt2              the policy as a torch.export program
    fastrl info                                          versions, extension, backend per op
"""

from __future__ import annotations

import argparse
import os
import sys

from fastrl.cli import eval as evaluate  # not to shadow the builtin
from fastrl.cli import export, info, rlhf, train
from fastrl.cli.flags import UsageError

__all__ = ["UsageError", "build_parser", "main"]

COMMANDS = (train, evaluate, rlhf, export, info)  # one module per command group, each with add_parser and run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastrl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command. Bad input is one line on stderr and exit code 2; a training run that
    diverged exits 1; Ctrl-C exits 130."""
    from fastrl import distributed
    from fastrl.algos.common import TrainingDiverged
    from fastrl.utils.checkpoint import CheckpointError
    from fastrl.utils.config import ConfigError
    from fastrl.utils.rundir import RunDirError

    args = build_parser().parse_args(argv)
    label = getattr(args, "label", args.command)
    if distributed.launched_rank() != 0:  # under torchrun rank 0 alone reports; errors still reach stderr
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    ended_well = False
    try:
        code = args.func(args)
        ended_well = True
        return code
    except (UsageError, ConfigError, CheckpointError, RunDirError) as e:
        print(f"fastrl {label}: {_one_line(e)}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"fastrl {label}: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nfastrl {label}: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown(together=ended_well)  # leave the process group (torchrun): a clean exit


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
