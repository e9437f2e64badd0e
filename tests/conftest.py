"""Shared test set-up, the one place for it (issue 18):

- ``DEVICES``: the devices this machine has ("cuda" only where ``torch.cuda.is_available()``);
  tests parametrized over ``DEVICE_PARAMS`` list CUDA always, marked ``cuda``: skipped without one.
- ``backend(name)``: a context manager running its body on a backend ("native", "torch" or
  "auto"; what ``FASTRL_BACKEND`` sets), restoring the previous one; ``threads(n)`` likewise.
- fixtures: ``backend`` (every test on both backends: native and the PyTorch fallback),
  ``device`` (cpu, and cuda where there is one), ``torch_backend``; every test gets torch's
  thread count restored after it.
"""

import contextlib
import importlib
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

from fastrl import _native

# Property tests: no per-example deadline (the first call of an op may compile or warm caches).
# "ci", the default: a bounded number of examples so the suite stays within CI's budget, and
# derandomized (drawn from a hash of each test's code), so a `make test` that passes here is the
# run CI makes and a failure reproduces. "thorough" (HYPOTHESIS_PROFILE=thorough, `make fuzz`):
# the search itself, 1000 fresh random examples a test; what it finds gets a fix and a test.
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=1000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DEVICE_PARAMS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
BACKENDS = ("native", "torch")
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
def _set_for_body(get, set_, value):
    """Runs the body with ``set_(value)``, restoring ``get()``'s value from before."""
    previous = get()
    set_(value)
    try:
        yield
    finally:
        set_(previous)


def backend(name: str):
    """Runs the body with ``fastrl.set_backend(name)``, restoring the previous backend."""
    return _set_for_body(_native.get_backend, _native.set_backend, name)


def threads(n: int):
    """Runs the body with ``torch.set_num_threads(n)``, restoring the previous count."""
    return _set_for_body(torch.get_num_threads, torch.set_num_threads, n)


@pytest.fixture(name="backend", params=BACKENDS)
def backend_fixture(request):
    """Runs the test on the native kernels and on the PyTorch fallback; the value is the
    backend's name. Parametrize it indirectly to pick one."""
    if request.param == "native" and _native._C is None:
        pytest.skip(f"fastrl._C not built: {_native.load_error}")
    with backend(request.param):
        yield request.param


@pytest.fixture(params=DEVICE_PARAMS)
def device(request):
    """The device the test's tensors live on (a string); with the native backend, only devices
    the extension has kernels for."""
    name = request.param
    if name not in DEVICES:
        pytest.skip(f"needs a {name.upper()} device")
    native = "backend" in request.fixturenames and request.getfixturevalue("backend") == "native"
    if native and not _native.native_compiled_for(torch.device(name)):
        pytest.skip(f"fastrl._C has no {name} kernels")
    return name


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


def here_and_on_baseline_kernels(module: str, function: str, tmp_path: pathlib.Path, setup: str = ""):
    """``(here, baseline)``: the list ``module.function()`` returns in this process and in one on
    the baseline kernels (:func:`run_with_baseline_cpu_kernels`, after the Python ``setup``),
    checked to be of the same length."""
    script = f"import sys, torch\nfrom {module} import {function}\n{setup}torch.save({function}(), sys.argv[1])\n"
    baseline = run_with_baseline_cpu_kernels(script, tmp_path / "baseline.pt")
    here = getattr(importlib.import_module(module), function)()
    assert len(here) == len(baseline)
    return here, baseline
