"""The ``fastrl`` command: ``fastrl info`` and ``fastrl demo``."""

from __future__ import annotations

import argparse
import sys


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
              f"(parallel_for used {threads} of {torch.get_num_threads()} threads)")
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
        print(f"  {op:<20}" + "  ".join(cells))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fastrl.demo import run_ops_demo

    return run_ops_demo(steps=args.steps, envs=args.envs, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
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
