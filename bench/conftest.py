"""Shared benchmark set-up. Run with `make bench` (or `python -m pytest bench --benchmark-only`);
save a machine's figures with `--benchmark-json bench/results/<machine>.json`.

`cuda`-marked cases are skipped without a GPU (the hook is the tests' own)."""

import torch

from tests.conftest import pytest_collection_modifyitems  # noqa: F401


def sync(device: str) -> None:
    """Wait for queued GPU work so a benchmark times the kernel, not the launch."""
    if device == "cuda":
        torch.cuda.synchronize()
