"""Comparisons shared by the op tests."""

from __future__ import annotations

import torch

_INTS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
         torch.float64: torch.int64}  # fmt: skip


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal bit for bit (signed zeros and infinities included); NaN at the same places (its
    payload may differ)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    assert torch.equal(got.isnan(), want.isnan()), "NaN at different places"
    ints = _INTS[got.dtype]
    keep = ~got.isnan()
    same = got.contiguous().view(ints)[keep] == want.contiguous().view(ints)[keep]
    assert same.all(), f"{(~same).sum().item()} values differ: {got[keep][~same][:5]} vs {want[keep][~same][:5]}"

