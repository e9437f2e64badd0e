"""Masked statistics the trainers share: the mean over valid entries and whitening (advantage
normalization), for the classic trainers' batches and the RLHF trainers' padded token batches."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the valid entries (``mask`` True; the others may hold anything, even NaN); 0, not
    NaN, when none is valid (all masked, or an empty batch). ``mask=None``: every entry is valid."""
    if mask is None:
        return x.mean() if x.numel() else x.sum()  # sum: 0, still part of the autograd graph
    mask = mask.bool()
    return torch.where(mask, x, 0).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the valid entries, with the population variance
    (divided by the number of valid entries, as the mean is); 0 at invalid entries."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if mask is None else torch.where(mask, out, 0)
