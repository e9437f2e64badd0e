"""Shared test set-up: CUDA tests are marked `cuda` and skipped without a GPU; `devices` lists
the devices the native kernels can be compared on."""

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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def torch_backend():
    """Run the test body with the PyTorch fallbacks forced."""
    previous = _native.get_backend()
    _native.set_backend("torch")
    yield
    _native.set_backend(previous)


def run_with_baseline_cpu_kernels(script: str, out: pathlib.Path):
    """Runs ``script`` (Python source; ``sys.argv[1]`` is ``out``) in a fresh process from the
    repository root with ATEN_CPU_CAPABILITY=default, which turns off fastrl's *_avx2.cpp kernels
    (what a CPU without AVX2 runs), and returns what it saved there with ``torch.save``."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    subprocess.run([sys.executable, "-c", script, str(out)], cwd=root, env=env, check=True)
    return torch.load(out)
