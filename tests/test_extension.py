"""The compiled extension loaded and registered a kernel for every native op on every device it
was built for; ``make test`` passes --require-extension, so a failed build is a red run."""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

from fastrl import _native
from fastrl.ops import NATIVE_OPS

from .conftest import requires_native

KERNELS = sorted({kernel for _, kernels in NATIVE_OPS.values() for kernel in kernels})


@requires_native
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_native_op_has_its_kernels(kernel):
    for key in ["CPU"] + (["CUDA"] if _native.build_info["cuda"] else []):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastrl::{kernel}", key), (kernel, key)


def test_require_extension_fails_a_run_without_it(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, FASTRL_EXTENSION=str(tmp_path / "missing.so"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                          "--require-extension", "tests/test_extension.py"],
                         cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "fastrl._C did not load" in run.stdout + run.stderr
