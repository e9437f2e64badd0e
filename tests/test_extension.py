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


def _import_fastrl_under_torch(version: str) -> subprocess.CompletedProcess:
    """A fresh interpreter imports fastrl with torch.__version__ made to read ``version``, then
    reports the warnings, whether _C is in use and which backend gae took."""
    code = f"""
import json, warnings
import torch
torch.__version__ = {version!r}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastrl
    from fastrl import _native
    r = torch.ones(3, 2)
    flags = torch.zeros(3, 2, dtype=torch.bool)
    advantages, _ = fastrl.ops.gae(r, r, r, flags, flags, 0.9, 0.95)
print(json.dumps(dict(
    warnings=[str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    loaded=_native._C is not None, native=_native.use_native(torch.device("cpu")),
    built=_native.build_info.get("torch_version"), running=_native.TORCH_VERSION,
    advantages=advantages.tolist())))
"""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "FASTRL_BACKEND"}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)


@requires_native
def test_an_extension_built_for_another_torch_falls_back_with_one_warning():
    import json

    built = _native.build_info["torch_version"]
    run = _import_fastrl_under_torch("2.0.0+other")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert not out["loaded"] and not out["native"]
    assert (out["built"], out["running"]) == (built, "2.0.0+other")
    (warning,) = out["warnings"]
    assert f"built against torch {built} but torch 2.0.0+other is running" in warning
    assert "pip install --no-build-isolation" in warning
    # gae on the fallback: one step per row of ones, gamma 0.9, lam 0.95 (by hand: delta = 0.9)
    a2 = 0.9
    a1 = 0.9 + 0.9 * 0.95 * a2
    a0 = 0.9 + 0.9 * 0.95 * a1
    assert sum(out["advantages"], []) == pytest.approx([a0, a0, a1, a1, a2, a2])


@requires_native
def test_the_torch_it_was_built_for_is_used_without_a_warning():
    import json

    run = _import_fastrl_under_torch(str(torch.__version__))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["loaded"] and out["native"] and out["warnings"] == []


def test_torch_mismatch_names_both_versions():
    assert _native.torch_mismatch("2.13.0+cpu", "2.13.0+cpu") is None
    assert _native.torch_mismatch("2.13.0+cpu", "2.13.0+cu130") == (
        "fastrl._C was built against torch 2.13.0+cpu but torch 2.13.0+cu130 is running")


def _torch_pin(tmp_path, pythonpath: str) -> subprocess.CompletedProcess:
    """tools/torch_pin.py's metadata hook, as scikit-build-core calls it before CMake, in
    an interpreter whose PYTHONPATH is ``pythonpath``."""
    root = pathlib.Path(__file__).resolve().parents[1]
    code = ("import sys; sys.path.insert(0, 'tools'); import torch_pin; "
            "print(torch_pin.dynamic_metadata('dependencies', {'requires': ['numpy']}))")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_a_build_in_pips_isolated_environment_stops_at_once(tmp_path):
    isolated = tmp_path / "pip-build-env-abc123" / "site"
    isolated.mkdir(parents=True)
    run = _torch_pin(tmp_path, str(isolated))
    assert run.returncode != 0
    assert "cannot be built in pip's isolated build environment" in run.stderr
    assert "pip install --no-build-isolation ." in run.stderr
    assert "Traceback" not in run.stderr  # SystemExit: the message alone


def test_the_wheel_requires_the_torch_it_was_built_against(tmp_path):
    run = _torch_pin(tmp_path, "")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str([f"torch=={torch.__version__}", "numpy"])
