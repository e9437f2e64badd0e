"""Compile every CUDA source with nvcc, compile-only, against the installed torch's headers, and
check the C++ that only a CUDA build compiles (csrc/bindings.cpp and csrc/env_binding.cpp with
FASTRL_WITH_CUDA).

CI has no GPU and usually a CPU build of torch, so the extension it builds has no CUDA kernels;
this keeps the .cu files from rotting between GPU sessions. Flags mirror CMakeLists.txt.

    python tools/check_cuda.py [--arch 90] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def nvcc_command(source: Path, out: Path, arch: str) -> list[str]:
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{p}" for p in [ROOT / "csrc", *include_paths()]]
    return [
        os.environ.get("NVCC", "nvcc"), "-c", str(source), "-o", str(out),
        "-std=c++20", "-O3", "--fmad=false", "--expt-relaxed-constexpr",
        f"-gencode=arch=compute_{arch},code=sm_{arch}",
        "-DFASTRL_WITH_CUDA=1",
        # The CPU wheel lacks c10/cuda/impl/cuda_cmake_macros.h; this define skips it.
        "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",
        "-Xcompiler", "-fPIC", *includes,
    ]  # fmt: skip


def cuda_glue_command(source: Path) -> list[str]:
    """The host compiler on a file's FASTRL_WITH_CUDA branches, syntax only (no CUDA headers)."""
    import sysconfig

    import pybind11
    from torch.utils.cpp_extension import include_paths

    dirs = [ROOT / "csrc", sysconfig.get_paths()["include"], pybind11.get_include(), *include_paths()]
    return [
        os.environ.get("CXX", "c++"), "-fsyntax-only", "-std=c++20", "-DFASTRL_WITH_CUDA=1",
        "-DFASTRL_TORCH_VERSION=\"check\"", "-DTORCH_EXTENSION_NAME=_C", str(source),
        *[f"-I{d}" for d in dirs],
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="90", help="SM architecture to compile for (default 90)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    nvcc = os.environ.get("NVCC", "nvcc")
    if shutil.which(nvcc) is None:
        print(f"check_cuda: {nvcc} not found on PATH; install the CUDA toolkit or set NVCC", file=sys.stderr)
        return 2
    sources = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
    if not sources:
        print("check_cuda: no .cu files found under csrc/cuda", file=sys.stderr)
        return 2

    glue = [ROOT / "csrc" / "bindings.cpp", ROOT / "csrc" / "env_binding.cpp"]
    with tempfile.TemporaryDirectory() as tmp:
        def compile_one(src: Path):
            start = time.perf_counter()
            if src.suffix == ".cu":
                cmd = nvcc_command(src, Path(tmp) / (src.stem + ".o"), args.arch)
            else:
                cmd = cuda_glue_command(src)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            return src, proc, time.perf_counter() - start

        failed = 0
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for src, proc, seconds in pool.map(compile_one, sources + glue):
                rel = src.relative_to(ROOT)
                if proc.returncode == 0:
                    print(f"check_cuda: ok     {rel} ({seconds:.0f} s)")
                else:
                    failed += 1
                    print(f"check_cuda: FAILED {rel}\n{proc.stdout}{proc.stderr}", file=sys.stderr)
    total = len(sources) + len(glue)
    print(f"check_cuda: {total - failed} of {total} sources compile for CUDA (sm_{args.arch})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
