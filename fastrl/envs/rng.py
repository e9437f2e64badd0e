"""Philox4x32-10 in PyTorch: the same reset draws as csrc/core/rng.h, for the fallback."""

from __future__ import annotations

import torch

from fastrl import _native

_MASK = 0xFFFFFFFF
# Philox's constants are the C++ kernels' (_C.philox_constants()); this copy serves only where the
# extension is missing (tests/envs/test_registry.py checks that it equals the kernels').
FALLBACK_PHILOX = {"multipliers": (0xD2511F53, 0xCD9E8D57), "key_increments": (0x9E3779B9, 0xBB67AE85)}
PHILOX = _native._C.philox_constants() if _native._C is not None else FALLBACK_PHILOX
_MUL = tuple(PHILOX["multipliers"])  # of words 0 and 2
_BUMP = tuple(PHILOX["key_increments"])  # the key schedule of k0 and k1


def _philox4x32_10(c: list[torch.Tensor], k0: torch.Tensor, k1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten Philox rounds on int64 tensors holding uint32 words (counter words of one shape, keys
    broadcastable to it); returns the
    words stacked as (c0, c2) and (c1, c3). An int64 product of two uint32 values wraps to the
    bit pattern of the uint64 product, so its halves are right after masking.

    Words (0, 2) and (1, 3) are kept stacked, so a round is a handful of ops on [2, ...]
    tensors: (c0, c2) <- (hi(M1 c2) ^ c1 ^ k0, hi(M0 c0) ^ c3 ^ k1), (c1, c3) <- (lo(M1 c2),
    lo(M0 c0))."""
    even = torch.stack([c[0], c[2]])  # c0, c2
    odd = torch.stack([c[1], c[3]])  # c1, c3
    key = torch.stack([k0, k1])
    shape = (2,) + (1,) * c[0].dim()
    mul = torch.tensor(_MUL, dtype=torch.int64, device=even.device).view(shape)
    bump = torch.tensor(_BUMP, dtype=torch.int64, device=even.device).view(shape)
    for _ in range(10):
        p = (even * mul).flip(0)  # (M1 c2, M0 c0)
        even = (p >> 32).bitwise_and_(_MASK).bitwise_xor_(odd).bitwise_xor_(key)
        odd = p.bitwise_and_(_MASK)
        key = key.add_(bump).bitwise_and_(_MASK)
    return even, odd


def reset_uniforms(seeds: torch.Tensor, envs: torch.Tensor, resets: torch.Tensor, count: int):
    """``count`` float64 tensors uniform in [0, 1): the draws of reset number ``resets`` of the
    envs with indices ``envs`` (all int64 [K]), like core::ResetStream::next_double. All the
    Philox blocks they need are computed at once, as [blocks, K] tensors."""
    blocks = (count + 1) // 2
    k = envs.shape[0]
    block = torch.arange(blocks, dtype=torch.int64, device=envs.device).view(blocks, 1).expand(blocks, k)
    row = lambda t: t.view(1, k).expand(blocks, k)  # noqa: E731
    counter = [block, row(resets & _MASK), row((resets >> 32) & _MASK), row(envs)]
    # Keys as [1, K]: the same for every block, broadcast in the rounds.
    even, odd = _philox4x32_10(counter, (seeds & _MASK).view(1, k), ((seeds >> 32) & _MASK).view(1, k))
    # Draw 2b uses words (0, 1) of block b, draw 2b + 1 words (2, 3): hi words are even, lo odd.
    hi, lo = (w.transpose(0, 1).reshape(2 * blocks, k) for w in (even, odd))
    return list(((hi << 21) | (lo >> 11)).double().mul_(2.0**-53).unbind(0))[:count]


def step_uniforms(seeds: torch.Tensor, envs: torch.Tensor, resets: torch.Tensor, elapsed: torch.Tensor, count: int):
    """``count`` float64 tensors uniform in [0, 1): the draws of step ``elapsed`` of the episode
    after reset number ``resets`` of the envs ``envs`` (all integer [K]), like
    core::minatar::StepStream: Philox counter (2**31 | block, elapsed, resets, env)."""
    blocks = (count + 1) // 2
    k = envs.shape[0]
    block = torch.arange(blocks, dtype=torch.int64, device=envs.device).view(blocks, 1).expand(blocks, k)
    row = lambda t: t.to(torch.int64).view(1, k).expand(blocks, k)  # noqa: E731
    counter = [block | 2**31, row(elapsed) & _MASK, row(resets) & _MASK, row(envs)]
    even, odd = _philox4x32_10(counter, (seeds & _MASK).view(1, k), ((seeds >> 32) & _MASK).view(1, k))
    hi, lo = (w.transpose(0, 1).reshape(2 * blocks, k) for w in (even, odd))
    return list(((hi << 21) | (lo >> 11)).double().mul_(2.0**-53).unbind(0))[:count]
