"""Philox4x32-10 in PyTorch: the same reset draws as csrc/core/rng.h, for the fallback."""

from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF


def _philox4x32_10(c: list[torch.Tensor], k0: torch.Tensor, k1: torch.Tensor) -> list[torch.Tensor]:
    """Ten Philox rounds on int64 tensors holding uint32 words. An int64 product of two uint32
    values wraps to the bit pattern of the uint64 product, so its halves are right after masking."""
    c0, c1, c2, c3 = c
    for _ in range(10):
        p0, p1 = c0 * 0xD2511F53, c2 * 0xCD9E8D57
        c0, c1, c2, c3 = (
            ((p1 >> 32) & _MASK) ^ c1 ^ k0,
            p1 & _MASK,
            ((p0 >> 32) & _MASK) ^ c3 ^ k1,
            p0 & _MASK,
        )
        k0, k1 = (k0 + 0x9E3779B9) & _MASK, (k1 + 0xBB67AE85) & _MASK
    return [c0, c1, c2, c3]


def reset_uniforms(seeds: torch.Tensor, envs: torch.Tensor, resets: torch.Tensor, count: int):
    """``count`` float64 tensors uniform in [0, 1): the draws of reset number ``resets`` of the
    envs with indices ``envs`` (all int64 [K]), like core::ResetStream::next_double."""
    k0, k1 = seeds & _MASK, (seeds >> 32) & _MASK
    out = []
    for block in range((count + 1) // 2):
        counter = [torch.full_like(envs, block), resets & _MASK, (resets >> 32) & _MASK, envs]
        w = _philox4x32_10(counter, k0, k1)
        for hi, lo in ((w[0], w[1]), (w[2], w[3])):
            out.append(((hi << 21) | (lo >> 11)).double() * 2.0**-53)
    return out[:count]
