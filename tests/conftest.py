"""Shared test set-up: CUDA tests are marked `cuda` and skipped without a GPU; `devices` lists
the devices the native kernels can be compared on."""

import contextlib
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

from fastrl import _native

# Property tests: no per-example deadline (the first call of an op may compile or warm caches), a
# bounded number of examples so the suite stays within CI's budget; HYPOTHESIS_PROFILE=thorough
# for a longer local search.
settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
requires_native = pytest.mark.skipif(
    _native._C is None, reason=f"fastrl._C not built: {_native.load_error}"
)


def pytest_addoption(parser):
    parser.addoption("--require-extension", action="store_true",
                     help="fail at once when fastrl._C did not load (make test: a broken build must not "
                          "pass as a green run of the PyTorch fallbacks)")


def pytest_sessionstart(session):
    if session.config.getoption("--require-extension") and _native._C is None:
        pytest.exit(f"--require-extension: fastrl._C did not load: {_native.load_error}", returncode=3)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@contextlib.contextmanager
def backend(name: str):
    """Runs the body with ``fastrl.set_backend(name)``, restoring the previous backend."""
    previous = _native.get_backend()
    _native.set_backend(name)
    try:
        yield
    finally:
        _native.set_backend(previous)


@contextlib.contextmanager
def threads(n: int):
    """Runs the body with ``torch.set_num_threads(n)``, restoring the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def torch_backend():
    """Run the test body with the PyTorch fallbacks forced."""
    with backend("torch"):
        yield


@pytest.fixture(autouse=True)
def _restore_threads():
    """No test leaks a thread setting into the next (a leaked 1 would leave threaded kernels
    untested for the rest of the run)."""
    with threads(torch.get_num_threads()):
        yield


def run_with_baseline_cpu_kernels(script: str, out: pathlib.Path):
    """Runs ``script`` (Python source; ``sys.argv[1]`` is ``out``) in a fresh process from the
    repository root with ATEN_CPU_CAPABILITY=default, which turns off fastrl's *_avx2.cpp kernels
    (what a CPU without AVX2 runs), and returns what it saved there with ``torch.save``."""
    if not _native.build_info.get("avx2"):
        pytest.skip("this process already runs the baseline kernels (no AVX2): nothing to compare")
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    # The child must really run the other build, or the comparison is of a build with itself.
    check = "from fastrl import _native\nassert not _native.build_info['avx2'], 'child runs AVX2'\n"
    subprocess.run([sys.executable, "-c", check + script, str(out)], cwd=root, env=env, check=True)
    return torch.load(out)
