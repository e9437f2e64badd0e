"""``fastrl train ALGO``: every field of the algorithm's config is a flag.

Bad input (a config value, a --config file, a checkpoint, a run directory) is one line on stderr
and exit code 2, before any work; a run that diverges (NaN/Inf) exits 1; Ctrl-C saves a checkpoint
and the plot and exits 130; SIGTERM (a job scheduler's notice) ends training at the next iteration,
saves them and exits 143."""

from __future__ import annotations

import argparse
import sys
import time
import typing
from pathlib import Path

from fastrl import distributed
from fastrl.cli.eval import print_eval
from fastrl.cli.flags import (
    UsageError,
    add_config_flags,
    as_flag,
    flag,
    flag_values,
    read_config_file,
)
from fastrl.utils.stopping import EXIT_SIGTERM

# Config fields a resumed run may change (with a printed notice); any other flag that differs from
# the checkpoint's config would change the algorithm mid-run, and is refused.
RESUMABLE = ("total_steps", "log_every", "checkpoint_every", "target_return", "cpu_threads")

_DEFAULTS_RULE = """Every config field is a flag. Its value: the flag, else the --config file, else
the value tuned for the env (listed as "tuned" in the flag's help; fastrl/algos/defaults.py), else
the default. In Python the same config is {cls}.tuned_config(ENV_ID, **overrides);
{config}(...) alone uses only the defaults."""


def add_parser(sub) -> None:
    from fastrl.algos import ALGOS
    from fastrl.algos.defaults import TUNED

    train = sub.add_parser("train", help="train an agent (fastrl train ALGO --help lists its options)")
    algos = train.add_subparsers(dest="algo", required=True, metavar="{" + ",".join(ALGOS) + "}")
    for name, cls in ALGOS.items():
        p = algos.add_parser(name, help=(cls.__module__ and sys.modules[cls.__module__].__doc__ or "").split("\n")[0],
                             description=_DEFAULTS_RULE.format(cls=cls.__name__, config=cls.Config.__name__))
        p.add_argument("--out", help="run directory (default runs/ALGO-ENV)")
        p.add_argument("--config", help="JSON or TOML file of config fields (flags override it)")
        p.add_argument("--resume", metavar="RUN", help="continue the run in directory RUN (or from the checkpoint "
                       "file RUN); with --out elsewhere, continue a copy of it there and leave RUN as it was")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the run that --out already holds (refused without this flag)")
        p.add_argument("--final-eval", type=int, default=100, metavar="EPISODES",
                       help="episodes of the evaluation after training (default 100; 0: none)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        add_config_flags(p, cls.Config, TUNED.get(name))
        p.set_defaults(func=run)


def _check_file_values(cls, values: dict, where: str) -> None:
    """Type and range of each field a config file sets, so an error names the file."""
    from fastrl.utils.config import ConfigError, check_field, check_names, field_rules

    check_names(cls.Config, values, where, label=cls.algo)  # an old name's error names the new one
    hints, rules = typing.get_type_hints(cls.Config), field_rules(cls.Config)
    for name, value in values.items():
        try:
            check_field(name, value, hints[name], rules.get(name))
        except ConfigError as e:
            raise UsageError(f"{where}: {e}") from None


def run(args: argparse.Namespace) -> int:
    from fastrl.algos import ALGOS
    from fastrl.utils.config import validate_config

    cls = ALGOS[args.algo]
    flags = flag_values(args, cls.Config)
    if args.final_eval < 0:
        raise UsageError(f"--final-eval must be >= 0, got {args.final_eval}")
    if args.resume:
        trainer = _resume(cls, args, flags)
    else:
        file_values = {}
        if args.config:
            file_values = read_config_file(args.config)
            _check_file_values(cls, file_values, f"--config {args.config}")
        # tuned defaults of the env the run will use (a flag, else the file, else the default)
        values = {**file_values, **flags}
        env_id = values.pop("env_id", cls.Config.env_id)
        config = validate_config(cls.tuned_config(env_id, **values))  # every field, before any work
        out = Path(args.out) if args.out else Path("runs") / f"{args.algo}-{config.env_id}"
        trainer = cls(config, out_dir=out, progress=not args.quiet, overwrite=args.overwrite)
    cfg = trainer.config
    print(f"fastrl: {args.algo} on {cfg.env_id}, {cfg.num_envs} envs, {cfg.total_steps} steps, device {cfg.device}")
    start = time.perf_counter()
    resume = f"continue with: fastrl train {args.algo} --resume {trainer.out_dir}"
    try:
        with trainer.stop_request:  # SIGTERM (a scheduler's notice): stop at the next iteration, saving
            summary = trainer.train()
    except KeyboardInterrupt:
        print(f"\nfastrl: interrupted at step {trainer.global_step}; wrote {trainer.out_dir}/checkpoint.pt and "
              f"learning_curve.png ({resume})", file=sys.stderr)
        return 130
    if trainer.stop_request.stopped:  # every rank stopped at the same iteration; rank 0 says so
        if trainer.world.is_main:
            print(f"fastrl: stopped by SIGTERM at step {trainer.global_step}; wrote {trainer.out_dir}/checkpoint.pt "
                  f"and learning_curve.png ({resume})", file=sys.stderr)
        return EXIT_SIGTERM
    print(f"fastrl: trained {summary['steps']} steps in {time.perf_counter() - start:.1f} s; mean return "
          f"of the last 100 training episodes {summary['return_last100']:.1f}")
    if args.final_eval:
        # under torchrun rank 0 alone evaluates; the others wait for its result, so the ranks leave together
        returns = trainer.evaluate(args.final_eval) if trainer.world.is_main else None
        print_eval(distributed.broadcast_object(returns))
    print(f"fastrl: wrote {trainer.out_dir}/metrics.csv, learning_curve.png, checkpoint.pt")
    return 0


def _resume(cls, args: argparse.Namespace, flags: dict):
    """``--resume RUN`` (a run directory or its checkpoint file). ``--out`` elsewhere continues a
    copy of the run there, leaving RUN as it was. Flags equal to the checkpoint's config are
    accepted; RESUMABLE ones that differ are applied with a notice; others are refused."""
    from fastrl.algos.common import load_trainer_checkpoint
    from fastrl.utils.config import check_field, field_rules, with_new_names

    if args.config:
        raise UsageError("--config cannot be combined with --resume: a resumed run keeps its checkpoint's config")
    state, path = load_trainer_checkpoint(args.resume)
    if state["algo"] != args.algo:
        raise UsageError(f"{path} holds a {state['algo']} run, not {args.algo}: "
                         f"resume it with `fastrl train {state['algo']} --resume {args.resume}`")
    out = Path(args.out) if args.out else path.parent
    if args.overwrite and out.resolve() == path.parent.resolve():
        raise UsageError("--overwrite would delete the run that --resume continues")
    saved = with_new_names(cls.Config, state["config"])  # a checkpoint from before a rename
    hints, rules = typing.get_type_hints(cls.Config), field_rules(cls.Config)
    overrides = {}
    for name, value in flags.items():
        value = check_field(name, value, hints[name], rules.get(name))  # as the config will hold it
        if name in saved and value == saved[name]:
            continue
        if name not in RESUMABLE:
            raise UsageError(f"{as_flag(name, value)} differs from the resumed run's {name} = {saved.get(name)!r}: "
                             f"it would change the algorithm mid-run; on --resume only "
                             f"{', '.join(flag(n) for n in RESUMABLE)} may change")
        overrides[name] = value
    trainer = cls.from_checkpoint(path, out_dir=out, progress=not args.quiet, overwrite=args.overwrite, **overrides)
    for name, value in overrides.items():
        print(f"fastrl: resuming with {name} = {value!r} (the checkpoint had {saved.get(name)!r})")
    return trainer
