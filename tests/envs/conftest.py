"""Fixtures shared by the env tests."""

import pytest

from fastrl import _native
from tests.conftest import backend as use_backend

BACKENDS = ["native", "torch"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Runs the test on the native kernels and on the PyTorch fallback (the backend's name)."""
    if request.param == "native" and _native._C is None:
        pytest.skip("fastrl._C not built")
    with use_backend(request.param):
        yield request.param
