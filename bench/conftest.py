"""Shared benchmark set-up. Run with `make bench` (or `python -m pytest bench --benchmark-only`);
save a machine's figures with `--benchmark-json bench/results/<machine>.json`."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def sync(device: str) -> None:
    """Wait for queued GPU work so a benchmark times the kernel, not the launch."""
    if device == "cuda":
        torch.cuda.synchronize()
