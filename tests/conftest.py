"""Shared test set-up: CUDA tests are marked `cuda` and skipped without a GPU; `devices` lists
the devices the native kernels can be compared on."""

import pytest
import torch

from fastrl import _native

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
