"""Check that fastrl._C loaded, was built with its CUDA kernels, and that the dispatcher has a CUDA
kernel for every op that has a CPU one; with --need-gpu, also that a GPU is visible to torch.

`make check-cuda-build` runs it without a GPU (the build links and loads against a CUDA torch);
bench/gpu.sh runs it with --need-gpu before any test or benchmark, so that a failed build cannot
pass as a run of the PyTorch fallbacks. Exit status 1 and one line per problem when one fails.

    python tools/check_cuda_build.py [--need-gpu]
"""

from __future__ import annotations

import argparse
import sys


def fastrl_ops(dispatch_key: str) -> set[str]:
    import torch

    ops = set()
    for line in torch._C._dispatch_get_registrations_for_dispatch_key(dispatch_key):
        if line.startswith("fastrl::"):
            ops.add(line.removeprefix("fastrl::").split(".")[0])
    return ops


def problems(need_gpu: bool) -> list[str]:
    import torch

    from fastrl import _native

    found = []
    if need_gpu and not torch.cuda.is_available():
        found.append(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
    if _native._C is None:
        return found + [f"fastrl._C is not in use: {_native.load_error}"]
    if not _native.build_info.get("cuda"):
        found.append(f"fastrl._C ({_native._C.__file__}) was built without its CUDA kernels")
        return found
    cpu, cuda = fastrl_ops("CPU"), fastrl_ops("CUDA")
    if not cpu:
        found.append("no fastrl op has a CPU kernel")
    if cpu - cuda:
        found.append(f"ops with a CPU kernel but no CUDA kernel: {sorted(cpu - cuda)}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--need-gpu", action="store_true", help="also fail when torch sees no GPU")
    args = parser.parse_args()
    found = problems(args.need_gpu)
    for problem in found:
        print(f"check_cuda_build: FAILED: {problem}", file=sys.stderr)
    if not found:
        from fastrl import _native

        print(f"check_cuda_build: ok: {_native._C.__file__} has CUDA kernels for all "
              f"{len(fastrl_ops('CUDA'))} ops")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
