"""The ``fastrl`` command.

    fastrl train ppo --env CartPole-v1 --out runs/ppo    train (every config field is a flag)
    fastrl train ppo --resume runs/ppo --total-steps N   continue a run exactly where it stopped
    fastrl eval runs/ppo/checkpoint.pt --episodes 100    mean and std of the greedy policy's return
    fastrl rlhf demo --algo ppo                          offline RLHF: SFT, reward model, PPO/GRPO
    fastrl export runs/ppo --out policy.pt2              the policy as a torch.export program
    fastrl info                                          versions, extension, backend per op
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
import typing
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import torch

    from fastrl import _native
    from fastrl.ops import NATIVE_OPS

    print(f"fastrl      {__import__('fastrl').__version__}")
    print(f"python      {sys.version.split()[0]}")
    print(f"torch       {torch.__version__} (CUDA {torch.version.cuda or 'none'}; "
          f"{torch.cuda.device_count()} GPU(s) visible)")
    if _native._C is None:
        print(f"extension   NOT used: {_native.load_error}")
    else:
        info = _native.build_info
        threads = _native._C.parallel_threads_used()
        print(f"extension   loaded from {_native._C.__file__}")
        print(f"            built against torch {info['torch_version']}; CUDA kernels: "
              f"{'yes' if info['cuda'] else 'no'}; OpenMP: {'yes' if info['openmp'] else 'NO'} "
              f"(parallel_for used {threads} of {torch.get_num_threads()} threads); CPU kernels: "
              f"{'AVX2' if info['avx2'] else 'baseline x86-64 / portable (no AVX2, or ATEN_CPU_CAPABILITY=default)'}")
    print(f"backend     {_native.get_backend()} (FASTRL_BACKEND or fastrl.set_backend)")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print("ops         " + "  ".join(f"{d.type:>6}" for d in devices))
    for op in NATIVE_OPS:
        cells = []
        for d in devices:
            try:
                cells.append("native" if _native.use_native(d) else " torch")
            except RuntimeError:
                cells.append(" error")
        print(f"  {op:<22}" + "  ".join(cells))
    return 0


def _export(args: argparse.Namespace) -> int:
    from fastrl.policy import export_policy, load_policy

    policy = load_policy(args.checkpoint)
    path = export_policy(policy, args.out)
    kind = "actions" if policy.kind == "gaussian" else "action indices"
    print(f"fastrl export: wrote {path}: {policy.algo} on {policy.env_id}, observations [N, "
          f"{', '.join(map(str, policy.obs_shape))}] -> greedy {kind}; load it with "
          f"torch.export.load({str(path)!r}).module()")
    return 0


# --------------------------------------------------------------------------- train / eval
#
# Bad input (a config value, a --config file, a checkpoint, a run directory) is one line on
# stderr and exit code 2, before any work; a run that diverges (NaN/Inf) exits 1; Ctrl-C saves a
# checkpoint and the plot and exits 130.

_COMMON_FLAGS = {"env_id": "--env"}  # the short spelling of the most used flag
# Config fields a resumed run may change (with a printed notice); any other flag that differs from
# the checkpoint's config would change the algorithm mid-run, and is refused.
RESUMABLE = ("total_steps", "log_every", "checkpoint_every", "target_return", "cpu_threads")


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


def _flag(name: str) -> str:
    return _COMMON_FLAGS.get(name, "--" + name.replace("_", "-"))


class _RenamedFlag(argparse.Action):
    """The flag of a renamed config field: recorded, and refused by _train in one line naming the
    new flag (``const``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.renamed_flag = (option_string, self.const)


def _json_object(flag: str):
    """argparse type of a dict field: a JSON object, e.g. '{"max_episode_steps": 200}'."""

    def parse(text: str) -> dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object: {e}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object, got {text!r}")
        return value

    return parse


_DEFAULTS_RULE = """Every config field is a flag. Its value: the flag, else the --config file, else
the value tuned for the env (listed as "tuned" in the flag's help; fastrl/algos/defaults.py), else
the default. In Python the same config is {cls}.tuned_config(ENV_ID, **overrides);
{config}(...) alone uses only the defaults."""


def _add_config_flags(parser: argparse.ArgumentParser, config_cls: type, tuned: dict | None = None) -> None:
    """One flag per dataclass field, typed from its annotation, documented by its docstring.
    Defaults are None so that only flags the user typed override the config. ``tuned``: env id ->
    the values tuned for it (the one rule: a tuned value replaces the default for that env), shown
    in each flag's help. The flags of renamed fields are hidden and refused, naming the new flag."""
    from fastrl.algos.common import field_docs
    from fastrl.utils.config import Range, field_rules, renamed_fields

    docs = field_docs(config_cls)
    rules = field_rules(config_cls)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = _flag(f.name)
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = json.dumps(f.default_factory())
        rule = rules.get(f.name)
        allowed = f"; {rule}" if isinstance(rule, Range) else ""
        per_env = ", ".join(f"{env} {values[f.name]}" for env, values in (tuned or {}).items() if f.name in values)
        per_env = f"; tuned: {per_env}" if per_env else ""
        help_ = f"{docs.get(f.name, '')} (default: {default}{per_env}{allowed})"
        args = typing.get_args(kind)
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(kind) is dict:
            parser.add_argument(flag, dest=f.name, type=_json_object(flag), default=None, help=help_, metavar="JSON")
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, dest=f.name, type=args[0], nargs="+", default=None, help=help_)
        else:
            base = next((a for a in args if a is not type(None)), kind)  # X | None -> X
            choices = rule if isinstance(rule, tuple) else None
            parser.add_argument(flag, dest=f.name, type=base, default=None, help=help_, choices=choices,
                                metavar=base.__name__.upper() if choices is None else None)
    parser.set_defaults(renamed_flag=None)
    for old, new in renamed_fields(config_cls).items():
        parser.add_argument(_flag(old), action=_RenamedFlag, const=_flag(new), nargs="*", help=argparse.SUPPRESS)
        if hints[new] is bool:
            parser.add_argument("--no-" + _flag(old)[2:], action=_RenamedFlag, const="--no-" + _flag(new)[2:],
                                nargs="*", help=argparse.SUPPRESS)


def _read_config_file(path: str) -> dict:
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


def _train(args: argparse.Namespace) -> int:
    from fastrl.algos import ALGOS
    from fastrl.utils.config import validate_config

    cls = ALGOS[args.algo]
    if args.renamed_flag:
        old, new = args.renamed_flag
        raise UsageError(f"{old} was renamed {new}: use {new}")
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls.Config)
             if getattr(args, f.name) is not None}
    if args.final_eval < 0:
        raise UsageError(f"--final-eval must be >= 0, got {args.final_eval}")
    if args.resume:
        trainer = _resume(cls, args, flags)
    else:
        file_values = {}
        if args.config:
            file_values = _read_config_file(args.config)
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
    try:
        summary = trainer.train()
    except KeyboardInterrupt:
        print(f"\nfastrl: interrupted at step {trainer.global_step}; wrote {trainer.out_dir}/checkpoint.pt and "
              f"learning_curve.png (continue with: fastrl train {args.algo} --resume {trainer.out_dir})",
              file=sys.stderr)
        return 130
    print(f"fastrl: trained {summary['steps']} steps in {time.perf_counter() - start:.1f} s; mean return "
          f"of the last 100 training episodes {summary['return_last100']:.1f}")
    if args.final_eval:
        _print_eval(trainer.evaluate(args.final_eval))
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
            raise UsageError(f"{_as_flag(name, value)} differs from the resumed run's {name} = {saved.get(name)!r}: "
                             f"it would change the algorithm mid-run; on --resume only "
                             f"{', '.join(_flag(n) for n in RESUMABLE)} may change")
        overrides[name] = value
    trainer = cls.from_checkpoint(path, out_dir=out, progress=not args.quiet, overwrite=args.overwrite, **overrides)
    for name, value in overrides.items():
        print(f"fastrl: resuming with {name} = {value!r} (the checkpoint had {saved.get(name)!r})")
    return trainer


def _as_flag(name: str, value) -> str:
    """The flag as typed: ``--num-envs 4``, ``--no-anneal-lr``, ``--hidden 64 64``."""
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + _flag(name)[2:]
    return f"{_flag(name)} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"


def _print_eval(returns: list[float]) -> None:
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / n)
    print(f"eval: {n} episodes, return {mean:.1f} ± {std:.1f} (min {min(returns):.1f}, max {max(returns):.1f})")


def _eval(args: argparse.Namespace) -> int:
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
    _print_eval(trainer.evaluate(args.episodes, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fastrl.algos import ALGOS
    from fastrl.algos.defaults import TUNED

    parser = argparse.ArgumentParser(prog="fastrl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

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
        _add_config_flags(p, cls.Config, TUNED.get(name))
        p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint's greedy policy")
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory)")
    p.add_argument("--episodes", type=int, default=100, help="episodes to run, >= 1 (default 100)")
    p.add_argument("--seed", type=int, default=None,
                   help="evaluation seed, in [0, 2**63) (default: apart from training's)")
    p.add_argument("--device", default=None, help="override the device the checkpoint was trained on")
    p.set_defaults(func=_eval)

    from fastrl.rlhf.cli import add_rlhf_parser

    add_rlhf_parser(sub)

    p = sub.add_parser("export", help="write a checkpoint's policy as a torch.export program (runs without fastrl)")
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory)")
    p.add_argument("--out", required=True, help="the program's file, e.g. policy.pt2")
    p.set_defaults(func=_export)

    p = sub.add_parser("info", help="versions, whether the extension loaded, backend per op")
    p.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("train", "eval", "export"):
        return args.func(args)
    from fastrl import distributed
    from fastrl.algos.common import TrainingDiverged
    from fastrl.utils.checkpoint import CheckpointError
    from fastrl.utils.config import ConfigError
    from fastrl.utils.rundir import RunDirError

    if distributed.launched_rank() != 0:  # under torchrun rank 0 alone reports; errors still reach stderr
        sys.stdout = open(__import__("os").devnull, "w")  # noqa: SIM115 (for the life of the process)
    try:
        return args.func(args)
    except (UsageError, ConfigError, CheckpointError, RunDirError) as e:
        print(f"fastrl {args.command}: {_one_line(e)}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"fastrl {args.command}: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nfastrl {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()  # leave the process group (torchrun): a clean exit


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
