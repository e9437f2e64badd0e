"""``fastrl info``: versions, whether the extension loaded (and why not), the backend per op."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, whether the extension loaded, backend per op")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    from fastrl.nn import linear

    print(f"nn          fastrl.nn.Linear in float32 on the CPU: {'oneDNN' if linear.ONEDNN else 'torch'}'s GEMMs "
          "(FASTRL_ONEDNN_LINEAR=auto|0|1)")
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
