"""The ``fastrl`` command.

    fastrl train ppo --env CartPole-v1 --out runs/ppo    train (every config field is a flag)
    fastrl train ppo --resume runs/ppo --total-steps N   continue a run exactly where it stopped
    fastrl eval runs/ppo/checkpoint.pt --episodes 100    mean and std of the greedy policy's return
    fastrl rlhf demo --algo ppo                          offline RLHF: SFT, reward model, PPO/GRPO
    fastrl info                                          versions, extension, backend per op
    fastrl demo                                          GAE: native kernel vs PyTorch reference
"""

from __future__ import annotations

import argparse
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
        print(f"extension   NOT loaded: {_native.load_error}")
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


def _demo(args: argparse.Namespace) -> int:
    from fastrl.demo import run_ops_demo

    return run_ops_demo(steps=args.steps, envs=args.envs, seed=args.seed)


# --------------------------------------------------------------------------- train / eval

_COMMON_FLAGS = {"env_id": "--env"}  # the spelling for the most used flag


def _add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One flag per dataclass field, typed from its annotation, documented by its docstring.
    Defaults are None so that only flags the user typed override the config."""
    from fastrl.algos.common import field_docs

    docs = field_docs(config_cls)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = _COMMON_FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f"{docs.get(f.name, '')} (default: {default})"
        args = typing.get_args(kind)
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, dest=f.name, type=args[0], nargs="+", default=None, help=help_)
        else:
            base = next((a for a in args if a is not type(None)), kind)  # X | None -> X
            parser.add_argument(flag, dest=f.name, type=base, default=None, help=help_, metavar=base.__name__.upper())


def _read_config_file(path: str) -> dict:
    text = Path(path).read_text()
    if path.endswith(".toml"):
        import tomllib

        return tomllib.loads(text)
    return json.loads(text)


def _train(args: argparse.Namespace) -> int:
    from fastrl.algos import ALGOS
    from fastrl.algos.defaults import tuned_defaults

    cls = ALGOS[args.algo]
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls.Config)
             if getattr(args, f.name) is not None}
    out = Path(args.out) if args.out else None
    if args.resume:
        overrides = {k: v for k, v in flags.items()
                     if k in ("total_steps", "log_every", "checkpoint_every", "target_return", "cpu_threads")}
        out = out or Path(args.resume)
        trainer = cls.from_checkpoint(Path(args.resume), out_dir=out, progress=not args.quiet, **overrides)
    else:
        env_id = flags.get("env_id", cls.Config.env_id)
        values = tuned_defaults(args.algo, env_id)
        if args.config:
            values.update(_read_config_file(args.config))
        values.update(flags)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls.Config)}
        if unknown:
            raise SystemExit(f"fastrl train: unknown config fields for {args.algo}: {sorted(unknown)}")
        try:
            config = cls.Config(**values)
            trainer = cls(config, out_dir=out or Path("runs") / f"{args.algo}-{env_id}", progress=not args.quiet)
        except (ValueError, TypeError) as e:
            raise SystemExit(f"fastrl train: {e}") from None
    cfg = trainer.config
    print(f"fastrl: {args.algo} on {cfg.env_id}, {cfg.num_envs} envs, {cfg.total_steps} steps, device {cfg.device}")
    start = time.perf_counter()
    summary = trainer.train()
    print(f"fastrl: trained {summary['steps']} steps in {time.perf_counter() - start:.1f} s; mean return "
          f"of the last 100 training episodes {summary['return_last100']:.1f}")
    returns = trainer.evaluate(args.final_eval)
    _print_eval(returns)
    print(f"fastrl: wrote {trainer.out_dir}/metrics.csv, learning_curve.png, checkpoint.pt")
    return 0


def _print_eval(returns: list[float]) -> None:
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / n)
    print(f"eval: {n} episodes, return {mean:.1f} ± {std:.1f} (min {min(returns):.1f}, max {max(returns):.1f})")


def _eval(args: argparse.Namespace) -> int:
    from fastrl.algos import ALGOS
    from fastrl.utils.checkpoint import load_checkpoint

    state = load_checkpoint(args.checkpoint)
    cls = ALGOS[state["algo"]]
    overrides = {"device": args.device} if args.device else {}
    config = cls.Config(**{**state["config"], **overrides})
    trainer = cls(config)
    trainer.load_state_dict(state)
    _print_eval(trainer.evaluate(args.episodes, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fastrl.algos import ALGOS

    parser = argparse.ArgumentParser(prog="fastrl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent (fastrl train ALGO --help lists its options)")
    algos = train.add_subparsers(dest="algo", required=True, metavar="{" + ",".join(ALGOS) + "}")
    for name, cls in ALGOS.items():
        p = algos.add_parser(name, help=(cls.__module__ and sys.modules[cls.__module__].__doc__ or "").split("\n")[0],
)
        p.add_argument("--out", help="run directory (default runs/ALGO-ENV)")
        p.add_argument("--config", help="JSON or TOML file of config fields (flags override it)")
        p.add_argument("--resume", metavar="DIR", help="continue the run whose checkpoint is in DIR")
        p.add_argument("--final-eval", type=int, default=100, metavar="EPISODES",
                       help="episodes of the evaluation after training (default 100)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_config_flags(p, cls.Config)
        p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint's greedy policy")
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: apart from training's)")
    p.add_argument("--device", default=None, help="override the device the checkpoint was trained on")
    p.set_defaults(func=_eval)

    from fastrl.rlhf.cli import add_rlhf_parser

    add_rlhf_parser(sub)

    p = sub.add_parser("info", help="versions, whether the extension loaded, backend per op")
    p.set_defaults(func=_info)
    p = sub.add_parser("demo", help="GAE on a synthetic rollout: native vs PyTorch reference")
    p.add_argument("--steps", type=int, default=2048, help="rollout length T")
    p.add_argument("--envs", type=int, default=64, help="number of environments B")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
